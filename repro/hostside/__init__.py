"""The POSIX sh that runs on the hosts, kept as files so shellcheck lints them as they are.

Read with importlib.resources (they ship in the wheel as package data).
"""

"""Shell completion scripts for `repro`, generated from the argparse parser itself, so they
never drift from the real commands and options (`repro completion bash|zsh`).
"""

from __future__ import annotations

import argparse
import shlex

from repro.errors import UsageError

SHELLS = ("bash", "zsh")


def _walk(
    parser: argparse.ArgumentParser, path: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command path, "" for the top, "/hosts/trust" for `repro hosts trust`."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_walk(sub, f"{path}/{name}"))
    return found


def _words(parser: argparse.ArgumentParser) -> list[str]:
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            words.extend(action.choices)
        else:
            words.extend(action.option_strings)
    return words


def _choices(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Option -> its fixed choices (e.g. --format table md json)."""
    table: dict[str, list[str]] = {}
    for action in parser._actions:
        if action.choices and action.option_strings:
            for option in action.option_strings:
                table[option] = [str(c) for c in action.choices]
    return table


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash completion script: subcommands, options, option choices, else file names."""
    commands = _walk(parser)
    paths = "|".join(f"/{p[1:]}" for p, _ in commands if p)
    lines = [
        "# repro completion for bash: eval \"$(repro completion bash)\"",
        "_repro() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local path="" w opts="" choices=""',
        '    for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do',
        '        case "$path/$w" in',
        f'            {paths}) path="$path/$w" ;;',
        "        esac",
        "    done",
        '    case "$path" in',
    ]
    for path, sub in commands:
        words = " ".join(shlex.quote(w) for w in _words(sub))
        lines.append(f'        "{path}") opts={shlex.quote(words)}')
        choice_cases = [
            f"                {shlex.quote(opt)}) choices={shlex.quote(' '.join(values))} ;;"
            for opt, values in _choices(sub).items()
        ]
        if choice_cases:
            lines += ['            case "$prev" in', *choice_cases, "            esac"]
        lines.append("            ;;")
    lines += [
        "    esac",
        '    if [[ -n "$choices" ]]; then',
        '        COMPREPLY=($(compgen -W "$choices" -- "$cur"))',
        '    elif [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur") $(compgen -f -- "$cur"))',
        "    fi",
        "}",
        "complete -o filenames -F _repro repro",
        "",
    ]
    return "\n".join(lines)


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    if shell == "bash":
        return bash(parser)
    if shell == "zsh":
        # zsh runs bash completions through bashcompinit; one generator serves both.
        return "autoload -U +X bashcompinit && bashcompinit\n" + bash(parser)
    raise UsageError(f"completion: no script for {shell!r} (choose {', '.join(SHELLS)})")

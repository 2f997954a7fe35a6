/* The demo playbook's program: __FILE__ is the absolute path it was compiled from, so the
 * build directory ends up in the binary unless -ffile-prefix-map rewrites it. */
#include <stdio.h>

int main(void)
{
    printf("hello from %s\n", __FILE__);
    return 0;
}

"""``python -m medgo.train.node [trainer args]``: what every training node runs.

Reads the distributed env contract (:class:`~medgo.train.distributed.NodeEnv`) and replaces itself
with ``torchrun … -m medgo.train [trainer args]``. A PyTorchJob pod and a simulated local node run
this same command with the same variables, so the cluster and the laptop start training identically.
The node asks the kernel to kill it (and so torchrun, which it becomes) when its parent exits, so a
killed local launcher leaves no training behind.
"""

from __future__ import annotations

import os
import sys

from medgo.errors import MedgoError
from medgo.train.distributed import NodeEnv, die_with_parent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    die_with_parent()  # kept across exec: torchrun goes when whoever started this node goes
    try:
        node = NodeEnv.from_env()
    except MedgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = node.torchrun_command(args)
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

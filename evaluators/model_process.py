"""Entry point of the child process that runs one untrusted model for ``evaluators.sandbox``.

Run as ``python -m evaluators.model_process REQUEST_JSON``. Only the standard library is loaded
when the limits are set, so they cover every library the model needs and everything it does.
"""

import json
import resource
import sys
from pathlib import Path


def main(request_path: Path) -> int:
    request = json.loads(request_path.read_text())
    _limit_resources(memory_bytes=request["memory_bytes"], cpu_seconds=request["cpu_seconds"])
    from . import model_runner  # imported only now, under the limits

    return model_runner.run(request)


def _limit_resources(*, memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The soft limit raises SIGXCPU, which the sandbox reports as the CPU limit; the hard limit
    # a second later (SIGKILL) is only the backstop.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    # SIGXCPU and SIGSEGV dump core by default, and a memory-hungry model's core is huge.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

"""The parser is built without heavy imports, so `mesm --help`, every `mesm CMD --help` and
`mesm --version` answer at once (their time is in benchmarks/bench_cli_latency.py)."""

from __future__ import annotations

import subprocess
import sys

from mesm.cli import build_parser

HEAVY = ("torch", "transformers", "lightning", "av", "facenet_pytorch", "gradio", "numpy")


def _modules_after(argv: list[str]) -> tuple[int, set[str]]:
    code = (
        "import sys\nfrom mesm.cli import main\ntry:\n"
        f"    main({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
        "print(code, ' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, _, modules = out.stderr.strip().splitlines()[-1].partition(" ")
    return int(status), set(modules.split())


def test_help_and_version_import_nothing_heavy():
    commands = list(build_parser()._subparsers._group_actions[0].choices)
    assert len(commands) >= 10
    for argv in (["--help"], ["--version"], *([name, "--help"] for name in commands)):
        status, modules = _modules_after(argv)
        assert status == 0, argv
        assert modules.isdisjoint(HEAVY), (argv, sorted(modules & set(HEAVY)))


def test_version_prints_the_package_version():
    from mesm import __version__

    out = subprocess.run(
        [sys.executable, "-m", "mesm", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"mesm {__version__}"

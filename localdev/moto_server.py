"""moto server, as ``moto_server`` starts it, without three costs it pays on every request or reset here.

``python -m localdev.moto_server -H 127.0.0.1 -p PORT`` takes ``moto_server``'s arguments. The emulator serves the
same API with the same behaviour; measured with py-spy on five of the suite's test files (moto 5.2.5), these
were a quarter of moto's CPU:

- **The module list.** To route a request, moto lists its own package directory (~170 ``stat`` calls) on every
  request (``backends.list_of_moto_modules``). The list cannot change while the server runs: it is read once.
- **The AMI catalogue.** Each region's EC2 backend, created again after every ``/moto-api/reset``, loads moto's
  per-region "latest" AMIs (~37,000 across the regions) besides its 44 default ones. ``MOTO_AMIS_PATH`` (moto's
  own setting) names a file of the 44 defaults only; every AMI this project uses is one of them.
- **The access log.** werkzeug logs every request at INFO into the emulator's log file; warnings and errors are
  still logged.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
import tempfile
from pathlib import Path


def default_amis_file() -> Path:
    """moto's 44 default AMIs as a plain JSON file (written once per moto version, atomically)."""
    import importlib.metadata
    import importlib.util

    version = importlib.metadata.version("moto")
    path = Path(tempfile.gettempdir()) / f"runbooks-moto-{version}-default-amis.json"
    if not path.exists():
        spec = importlib.util.find_spec("moto")
        assert spec is not None and spec.origin is not None
        source = Path(spec.origin).parent / "ec2" / "resources" / "amis.json.gz"
        amis = json.loads(gzip.decompress(source.read_bytes()))
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(amis))
        partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MOTO_AMIS_PATH", str(default_amis_file()))  # read when moto.ec2 is imported
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # before werkzeug's first log line sets INFO

    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()

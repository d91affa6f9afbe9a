"""``python -m server``: the production command (gunicorn + eventlet worker) for development."""
import os
import sys
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"


def main() -> None:
    port = os.environ.get("PORT", "5000")
    # The config file is named explicitly so the outbox worker and the SIGTERM drain also start
    # when the command runs from another folder (gunicorn reads ./gunicorn.conf.py only).
    args = ["gunicorn", "-c", str(CONFIG), "-k", "eventlet", "-w", "1", "-b", f"0.0.0.0:{port}",
            "--graceful-timeout", "10", "server.app:app", *sys.argv[1:]]
    os.execvp(sys.executable, [sys.executable, "-m", *args])


if __name__ == "__main__":
    main()

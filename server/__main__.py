"""``python -m server``: the production command (gunicorn + eventlet worker) for development."""
import os
import sys


def main() -> None:
    port = os.environ.get("PORT", "5000")
    args = ["gunicorn", "-k", "eventlet", "-w", "1", "-b", f"0.0.0.0:{port}",
            "--graceful-timeout", "10", "server.app:app", *sys.argv[1:]]
    os.execvp(sys.executable, [sys.executable, "-m", *args])


if __name__ == "__main__":
    main()

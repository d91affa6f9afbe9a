"""Gunicorn settings read automatically from the working directory (the Procfile command stays the
one the deployment requires). Graceful shutdown: SIGTERM lets every active call finish its turn,
say goodbye and hang up before the worker exits."""
import os
import signal

graceful_timeout = 25


def child_exit(server, worker):
    """Several workers share their metrics in PROMETHEUS_MULTIPROC_DIR: an exited worker's live
    gauges (its active calls) stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    writer = worker.wsgi.config.get("RECORD_WRITER")
    if writer is not None:
        from server import green
        green.spawn_service(writer.run_forever)     # every write of a call, kept until the database takes it
    outbox = worker.wsgi.config.get("OUTBOX_WORKER")
    if outbox is not None:
        from server import green
        green.spawn_service(outbox.run_forever)     # lead deliveries, for the life of the worker
    metrics = worker.wsgi.config.get("CALL_METRICS")
    if metrics is not None and metrics.multiprocess:
        from server import green
        green.spawn_service(metrics.flush_forever)  # this worker's figures into the shared files
    keeper = worker.wsgi.config.get("RECORDING_KEEPER")
    if keeper is not None:
        from server import green
        green.spawn_service(keeper.sweep_forever)   # recordings past their business's retention
    registry = worker.wsgi.config.get("CALL_REGISTRY")
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        if registry is not None:
            registry.start_draining()         # every call's timer is rung: goodbye after the turn
        if outbox is not None:
            outbox.stop()                     # undelivered leads stay in the outbox for the next start
        if callable(previous):
            previous(signum, frame)           # gunicorn: stop accepting, wait for active calls

    signal.signal(signal.SIGTERM, on_sigterm)

"""The front of ``hfgit serve``: connections are read by one event loop per worker process,
and a thread serves a request only once it has arrived whole (see ``docs/limits.md``)."""

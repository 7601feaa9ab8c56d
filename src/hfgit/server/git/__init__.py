"""Git smart HTTP: the surface (:mod:`.service`), its engines and hfgit's own receive-pack.

``advertise``  the ``info/refs`` answer
``engines``    the registry of git engines and the built-in dulwich one
``fetch``      upload-pack within bounds
``push``       receive-pack: the handler that lands a push whole or not at all
``packs``      receiving a pushed pack into quarantine, indexed and checked in one pass
``checks``     ``git fsck``-style object checks and the connectivity walk
``refs``       the repository lock and compare-and-swap ref updates
"""

"""Git smart HTTP: the surface (:mod:`.service`), its engines and hfgit's own receive-pack.

``advertise``  the ``info/refs`` answer
``engines``    the registry of git engines and the built-in dulwich one
``cgit``       the ``git`` engine: fetches by ``git upload-pack``
``wants``      the fetch rules, checked on the request before either engine runs
``reach``      whether wants are reachable from the current refs
``gitproc``    running the git binary safely; ``slots`` the cap on pack generations
``fetch``      dulwich's upload-pack, fixed and hardened
``push``       receive-pack: the handler that lands a push whole or not at all
``packs``      receiving a pushed pack into quarantine, indexed and checked in one pass
``checks``     ``git fsck``-style object checks and the connectivity walk
``refs``       the repository lock and compare-and-swap ref updates
"""

from . import cgit as cgit  # registers the "git" engine

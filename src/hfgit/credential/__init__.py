"""The ``git-credential-hf`` helper: answers git with a user access token for its host only.

Nothing here may import the server, the database or any third-party package: git starts
the helper two or three times per operation, and it must run on machines that never serve.
"""

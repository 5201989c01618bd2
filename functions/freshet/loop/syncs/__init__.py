"""Built-in sync kinds, one package each (params.py, sync.py, KIND in __init__.py).

Importing this package registers nothing: freshet.loop.registry lists the built-in
kinds, and the kinds import only freshet.loop.syncs.base, never the registry.
"""

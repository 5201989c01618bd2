"""Notification route types, one package each, as the sync kinds are:

    <type>/params.py    its keys and the check `apply` runs: parse(doc, where) -> RouteSpec
    <type>/send.py      send(delivery, message, model): build the request and post it
                        through base.post (the guarded client, Freshet's own error words)
    <type>/__init__.py  TYPE = RouteKind("<type>", parse=..., send=...)

freshet.status.notify lists the types; what to tell and when stays in
freshet.core.alerts (decide_route) and freshet.status.routing.
"""

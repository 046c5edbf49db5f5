"""The HTTP edge: the Connexion app built from the spec (`app.py`, also the composition
root), the handlers (HTTP only), the one error table (`problems.py`), the ASGI layers
around the API (`middleware.py`), authentication (`auth.py`), every adaptation of
Connexion (`connexion.py`), the server's connection limits (`connections.py`) and the
request threads (`threads.py`). Nothing outside this package sees HTTP."""

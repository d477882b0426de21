"""The Holdout command-line client: submit a model, wait for its evaluation, gate a CI build on it.

It needs only the standard library and requests, so a CI machine installs it without the server's
scientific stack.
"""

__version__ = "0.1.0"

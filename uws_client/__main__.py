"""``python -m uws_client``: the ``uws`` command."""

from uws_client.cli import main

main()

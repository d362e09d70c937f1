"""Finding data: the ObsCore catalogue and the VO interfaces over it.

``obscore`` (the table, the one visibility rule and the search), ``scs`` (Simple Cone
Search), ``datalink``, ``vosi`` and, from helper F, ``tap``/``adql``. Every interface
reads the catalogue through :func:`uws_server.vo.obscore.visible_to`.
"""

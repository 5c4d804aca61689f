"""``cocktail serve``: a local web page to separate, listen and extract.

:mod:`.app` holds the routes, :mod:`.jobs` the queue and the private folder, :mod:`.work`
what a job does with the library, :mod:`.server` the command; the page itself is in
``static/`` (no file is fetched from anywhere else at run time).
"""

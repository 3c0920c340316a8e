"""The web dashboard: static pages the API process serves at ``/`` (see ``static/``)."""

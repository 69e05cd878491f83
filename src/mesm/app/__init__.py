"""The web page of `mesm serve`: a checkpoint behind a Gradio page.

Layers: :mod:`mesm.app.outputs` turns predictions and errors into what the page shows (HTML,
Markdown: pure functions), :mod:`mesm.app.analyse` runs a loaded checkpoint on an uploaded clip or
long video and returns those outputs (no web code), and :mod:`mesm.app.page` builds the Gradio page
around it and serves it. Only :mod:`mesm.app.page` imports Gradio, and only when called, so the rest
of mesm works without the ``app`` extra (``pip install "mesm[app]"``).
"""

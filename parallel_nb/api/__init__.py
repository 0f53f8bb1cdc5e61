"""The Task API as Python: models, client, event streams and the documented limits.

Usable anywhere: nothing here imports IPython or widgets.
"""

"""The shipped task cards (`*.yaml`) and their bundled samples (`samples/`).

Installed as `pipelines.task_cards` (package data of the library; see setup.cfg); the library finds
them through `pipelines.card.shipped`.
"""

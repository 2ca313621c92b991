"""The engine: the loop (``loop``), its chores (``chores``), what a run saves and restores
(``state``), processes (``distributed``), run folders and logs (``logging``), validation."""

"""``python -m medgo.serve``: see :mod:`medgo.serve.server`."""

from medgo.serve.server import main

if __name__ == "__main__":
    main()

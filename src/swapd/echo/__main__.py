"""``python -m swapd.echo``."""

from swapd.echo.server import main

if __name__ == "__main__":
    main()

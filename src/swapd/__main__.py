from swapd.cli import main

main()

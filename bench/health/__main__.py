from bench.health import main

main()

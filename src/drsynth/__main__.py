from drsynth.cli import main

if __name__ == "__main__":  # importing it (multiprocessing spawn/forkserver workers) must not run the CLI
    main()

from outreach.cli import main

# Guarded: worker processes (ingest validation) import the main module again.
if __name__ == "__main__":
    main()

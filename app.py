"""The speechlstm web demo: `python app.py [--checkpoint PATH] [--host] [--port] [--share]`."""

from speechlstm.webui import main

if __name__ == "__main__":
    main()

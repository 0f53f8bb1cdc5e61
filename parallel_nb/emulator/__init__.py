"""An offline emulator of Parallel's Task API: real HTTP on loopback, same wire format.

Demos and tests point any client (this package's, or the official ``parallel-web`` SDK) at
``start_emulator().base_url``. Importing this package starts nothing.
"""

from .server import DEFAULT_TIME_SCALE, EmulatorConfig, EmulatorHandle, start_emulator

__all__ = ["DEFAULT_TIME_SCALE", "EmulatorConfig", "EmulatorHandle", "start_emulator"]

"""Golden samples captured live from Binance (`scripts/capture_golden.py`): the streams written
byte for byte per UTC day, the gaps the capture knows of, optional encryption at rest."""

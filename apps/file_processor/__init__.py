"""The file processor: checks each uploaded exam result (file.uploaded) and records its verdict (see worker.py)."""

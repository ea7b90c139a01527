"""The shard store: WebDataset tars + a Parquet index, written atomically, resumable.

Layout and commit protocol: mentor/store/layout.py.
"""

from mentor.store.layout import StoreError
from mentor.store.reader import Store
from mentor.store.verify import store_info, verify_store
from mentor.store.writer import StoreWriter

__all__ = ["Store", "StoreError", "StoreWriter", "store_info", "verify_store"]

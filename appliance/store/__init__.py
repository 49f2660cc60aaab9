"""SQLite persistence behind one interface, `Store`."""

from appliance.store.records import Account, CreatedKey, KeyInfo, Plan, Principal
from appliance.store.store import Store

__all__ = ["Account", "CreatedKey", "KeyInfo", "Plan", "Principal", "Store"]

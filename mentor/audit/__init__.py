"""Dataset audit: hours, clips and identities per perceived group, spread per group,
rejections by reason and group with intervals and flags, imbalance against targets, two
stores side by side, and a static HTML report. Groups are perceived, automatic estimates."""

from mentor.audit.core import AuditResult, audit_store, compute_tables
from mentor.audit.stats import wilson_interval

__all__ = ["AuditResult", "audit_store", "compute_tables", "wilson_interval"]

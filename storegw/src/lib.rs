//! Object-store bucket, shipper and store gateway (later issue).

"""Orchestration side: ASN.1, PKI, servers, IPA, bench model, flows, reports, CLI."""

"""Software SGP.32 eUICC: ISD-R with ES10a/b/c, persistent NVM state."""

"""Field surveys: per-kind models, bulk import of survey sheets, attachment storage."""

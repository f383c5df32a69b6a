"""The web layer: Flask blueprints, forms, headers and error pages, the OpenAPI document, languages
and notices. It reads the rules through core and the data through store."""

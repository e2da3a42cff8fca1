#!/bin/sh
# Development only, before the first release: rebuild migration 0001 from the
# models. After a release, add new revisions instead (alembic revision --autogenerate).
set -eu
cd "$(dirname "$0")/.."
db=$(mktemp -u /tmp/mailgate-regen-XXXXXX.db)
rm -f mailgate/store/migrations/versions/0001_*.py
.venv/bin/python - "$db" <<'PY'
import sys
from alembic import command
from mailgate.store.db import _alembic_config, make_engine
command.revision(_alembic_config(make_engine(f"sqlite:///{sys.argv[1]}")), message="initial schema", autogenerate=True, rev_id="0001")
PY
f=$(ls mailgate/store/migrations/versions/0001_*.py)
sed -i 's/mailgate\.store\.models\.UtcDateTime()/sa.DateTime(timezone=True)/g; s/mailgate\.store\.models\.UtcDateTime(timezone=True)/sa.DateTime(timezone=True)/g; /^import mailgate/d' "$f"
rm -f "$db"
echo "regenerated $f"

#!/usr/bin/env bash
# models/ holds 77 MB of tracked weights, more than the 64 MiB a device call carries. `hide` takes
# them out of git's index (and ignores them) for the calls; `restore` puts the index back as it was.
# Nothing is deleted and nothing is committed; run `restore` before any commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
  hide) git rm -q --cached models/*.tflite models/*.keras
        printf '/models/*.tflite\n/models/*.keras\n' >> .git/info/exclude ;;
  restore) git reset -q -- models
           sed -i '/^\/models\/\*\.tflite$/d; /^\/models\/\*\.keras$/d' .git/info/exclude ;;
  *) echo "usage: models.sh hide|restore" >&2; exit 2 ;;
esac

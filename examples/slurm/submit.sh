#!/bin/sh
# submit.sh SOURCE DEST: submit the shard array and the final pass, which
# starts only if every shard succeeded (afterok).  Prints the final job's id.
set -e
cd "$(dirname "$0")"
jid=$(sbatch --parsable copy-array.sbatch "$1" "$2")
sbatch --parsable --dependency=afterok:"${jid%%;*}" final.sbatch "$1" "$2"

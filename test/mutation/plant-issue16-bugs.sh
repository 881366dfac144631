#!/bin/bash
# Plants each of issue 16's bugs in a scratch copy and runs the engine + unit tests against it.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
S=$(mktemp -d)/scratch
for bug in 1 2 3; do
  rm -rf $S; mkdir -p $S
  (cd $SRC && git ls-files -z | xargs -0 cp --parents -t $S)
  ln -s $SRC/node_modules $S/node_modules
  cd $S
  case $bug in
    1) perl -0pi -e 's/if \(onVfio && viable && nodePresent\)/if (onVfio \&\& nodePresent)/' src/handoff/verdict.ts; git -C $SRC diff --no-index --stat $SRC/src/handoff/verdict.ts $S/src/handoff/verdict.ts ;;
    2) perl -0pi -e 's/m\.fn\.driver === undefined \|\| VIABLE_ENDPOINT_DRIVERS\.has\(m\.fn\.driver\)/VIABLE_ENDPOINT_DRIVERS.has(m.fn.driver ?? "")/' src/handoff/group.ts ;;
    3) perl -0pi -e 's/if \(changes \|\| nodeMissing\)/if (changes)/' src/handoff/plan.ts ;;
  esac
  echo "=== bug $bug diff"; diff -r $SRC/src $S/src
  echo "=== bug $bug tests"
  timeout 600 nice npx vitest run --project unit --project integration src test/integration/engine 2>&1 | grep -E "FAIL|Tests  |Test Files" | sed 's/\x1b\[[0-9;]*m//g' | sort -u | head -30
done

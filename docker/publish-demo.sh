#!/bin/sh
# Publishes the demo (home page and the dimension-mode product page) through dynpagectl into
# $DYNPAGE_REDIS (the primary): what scripts/run.sh does for `make run`, without the gen.py page.
set -eu
demo=/usr/share/dynpage/demo
# The primary may still be starting: retry the first write for up to 30 s.
n=0
until dynpagectl template put banner "$demo/banner.upon.html"; do
  n=$((n + 1)); [ "$n" -lt 60 ] || exit 1; sleep 0.5
done
dynpagectl template put home "$demo/home.upon.html"
dynpagectl page put / --data "$demo/home.json" --template home
for t in product shop-card description; do dynpagectl template put "$t" "$demo/$t.upon.html"; done
dynpagectl data put item:1001:base "$demo/item-1001-base.json"
dynpagectl data put item:1001:desc:pc "$demo/item-1001-desc-pc.json"
dynpagectl data put item:1001:desc:mobile "$demo/item-1001-desc-mobile.json"
dynpagectl data put shop:9 "$demo/shop-9.json"
echo "demo published: http://localhost:8080/ and http://localhost:8080/product?id=1001&shop=9"

#!/bin/bash
# Records the failing story with an old socktrace: $1 binary, $2 output file.
set -e
NS=rpt-old-$$
ip netns add $NS
trap 'kill $(jobs -p) 2>/dev/null; ip netns del $NS' EXIT
ip netns exec $NS ip link set lo up
ip netns exec $NS nft -f - <<'NFT'
table inet blackhole {
 chain in {
  type filter hook input priority 0;
  tcp dport 9092 drop
 }
}
NFT
ip netns exec $NS python3 -c '
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",8080)); s.listen(64)
while True:
    c,_=s.accept(); c.close()
' &
sleep 0.3
$1 --netns /run/netns/$NS -w $2 --force -q --duration 9s &
SOCK=$!
sleep 1
ip netns exec $NS python3 -c '
import socket, threading, time
def loop(port):
    while True:
        s=socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
        s.settimeout(4)
        try:
            s.connect(("127.0.0.1",port))
        except Exception:
            pass
        s.close()
        time.sleep(0.15)
for p in (9092, 8080, 8081):
    threading.Thread(target=loop, args=(p,), daemon=True).start()
time.sleep(7)
' &
wait $SOCK

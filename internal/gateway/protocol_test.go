package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// protoFixture is one gateway on a fresh Redis with n entries of epoch e1.
type protoFixture struct {
	rdb *redis.Client
	pub *gatewaytest.Publisher
	gw  *gatewaytest.Server
}

func newProto(t testing.TB, n int, tweak func(*gateway.Options)) protoFixture {
	t.Helper()
	_, rdb, pub := newRig(t, false)
	if n > 0 {
		pub.Publish(n)
	}
	o := opts(rdb, "a")
	if tweak != nil {
		tweak(&o)
	}
	gw := gatewaytest.Start(t, o, pub)
	gw.WaitReady(t, "e1")
	gatewaytest.Eventually(t, waitFor, func() error {
		if got := gw.G.Stats().LastSeq; got != uint64(n) {
			return fmt.Errorf("gateway at %d, want %d", got, n)
		}
		return nil
	})
	return protoFixture{rdb: rdb, pub: pub, gw: gw}
}

// Resuming: the gap is replayed between hello and live events, or the
// client is told to resync, for each reason a replay is impossible.
func TestResume(t *testing.T) {
	f := newProto(t, 20, func(o *gateway.Options) { o.ReplayLimit = 10 })
	type want struct {
		resumed bool
		reason  string
		replay  []uint64
	}
	cases := []struct {
		name, since string
		want        want
	}{
		{"no since", "", want{}},
		{"at the end", "e1:20", want{resumed: true}},
		{"gap replayed", "e1:12", want{resumed: true, replay: seqRange(13, 20)}},
		{"replay at the limit", "e1:10", want{resumed: true, replay: seqRange(11, 20)}},
		{"past the limit", "e1:9", want{reason: protocol.ReasonLimit}},
		{"other epoch", "e0:20", want{reason: protocol.ReasonEpoch}},
		{"ahead of the stream", "e1:25", want{reason: protocol.ReasonAhead}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := ""
			if tc.since != "" {
				q = "?since=" + tc.since
			}
			ws, _, err := rawDial(t, f.gw.URL, q, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := readFrame(t, ws)
			if h.Type != "hello" || h.Epoch != "e1" || h.Seq != 20 || h.Resumed != tc.want.resumed {
				t.Fatalf("hello %+v, want e1:20 resumed=%v", h, tc.want.resumed)
			}
			if tc.want.reason != "" {
				r := readFrame(t, ws)
				if r.Type != "resync" || r.Reason != tc.want.reason || r.Epoch != "e1" || r.Seq != 20 {
					t.Fatalf("frame %+v, want resync %s at e1:20", r, tc.want.reason)
				}
			}
			if tc.want.replay != nil {
				if got := readEvents(t, ws, 20); !slices.Equal(got, tc.want.replay) {
					t.Fatalf("replayed %v, want %v", got, tc.want.replay)
				}
			}
		})
	}

	t.Run("trimmed", func(t *testing.T) {
		if err := f.rdb.XTrimMinID(context.Background(), stream.KeysFor("t").Stream, stream.ID(15)).Err(); err != nil {
			t.Fatal(err)
		}
		ws, _, err := rawDial(t, f.gw.URL, "?since=e1:12", nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := readFrame(t, ws); h.Type != "hello" || h.Resumed {
			t.Fatalf("hello %+v, want not resumed", h)
		}
		if r := readFrame(t, ws); r.Type != "resync" || r.Reason != protocol.ReasonTrimmed {
			t.Fatalf("frame %+v, want resync trimmed", r)
		}
	})

	t.Run("live after replay without gap", func(t *testing.T) {
		ws, _, err := rawDial(t, f.gw.URL, "?since=e1:18", nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := readFrame(t, ws); !h.Resumed {
			t.Fatalf("hello %+v", h)
		}
		f.pub.Publish(5)
		if got := readEvents(t, ws, 25); !slices.Equal(got, seqRange(19, 25)) {
			t.Fatalf("got %v, want 19..25", got)
		}
	})
}

// A replay racing with live publishing still yields every sequence once.
func TestResumeWhilePublishing(t *testing.T) {
	f := newProto(t, 100, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.pub.Publish(10)
		}
	}()
	for i := range 5 {
		since := uint64(10 * (i + 1))
		ws, _, err := rawDial(t, f.gw.URL, fmt.Sprintf("?since=e1:%d", since), nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := readFrame(t, ws); !h.Resumed {
			t.Fatalf("hello %+v", h)
		}
		got := readEvents(t, ws, since+150)
		if want := seqRange(since+1, got[len(got)-1]); !slices.Equal(got, want) {
			t.Fatalf("since %d: got %v", since, got)
		}
	}
	close(stop)
	<-done
}

// What a client sends: only {"type":"ping"} is accepted (answered with a
// pong); anything else closes that connection with the matching close code
// and leaves other connections alone.
func TestClientFramesPolicedPerConnection(t *testing.T) {
	f := newProto(t, 0, nil)
	bystander, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, bystander) // hello

	ws, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, ws)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if p := readFrame(t, ws); p.Type != "pong" {
		t.Fatalf("got %+v, want pong", p)
	}

	cases := []struct {
		name string
		mt   int
		data []byte
		code int
	}{
		{"binary", websocket.BinaryMessage, []byte{1, 2, 3}, websocket.CloseUnsupportedData},
		{"not json", websocket.TextMessage, []byte("hello?"), websocket.CloseInvalidFramePayloadData},
		{"not utf-8", websocket.TextMessage, []byte{'"', 0xff, '"'}, websocket.CloseInvalidFramePayloadData},
		{"unknown type", websocket.TextMessage, []byte(`{"type":"pong"}`), websocket.ClosePolicyViolation},
		{"subscribe naming nothing", websocket.TextMessage, []byte(`{"type":"subscribe"}`), websocket.CloseInvalidFramePayloadData},
		{"subscribe malformed", websocket.TextMessage, []byte(`{"type":"subscribe","regions":["a"]}`), websocket.CloseInvalidFramePayloadData},
		{"unsubscribe all", websocket.TextMessage, []byte(`{"type":"unsubscribe","all":true}`), websocket.CloseInvalidFramePayloadData},
		{"region outside the canvas", websocket.TextMessage, []byte(`{"type":"subscribe","regions":[4096]}`), websocket.ClosePolicyViolation},
		{"too many regions", websocket.TextMessage, []byte(`{"type":"subscribe","regions":[` + manyRegions(257) + `]}`), websocket.ClosePolicyViolation},
		{"oversized", websocket.TextMessage, []byte(`{"type":"ping","pad":"` + strings.Repeat("x", 5000) + `"}`), websocket.CloseMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, err := rawDial(t, f.gw.URL, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			readFrame(t, ws)
			if err := ws.WriteMessage(tc.mt, tc.data); err != nil {
				t.Fatal(err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(waitFor))
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("read after bad frame: %v, want close %d", err, tc.code)
			}
		})
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if n := f.gw.G.Stats().Clients; n != 2 {
			return fmt.Errorf("%d clients, want the bystander and the pinger", n)
		}
		return nil
	})
	f.pub.Publish(3)
	if got := readEvents(t, bystander, 3); !slices.Equal(got, seqRange(1, 3)) {
		t.Fatalf("bystander got %v", got)
	}
}

// Refusals happen before the upgrade, with a JSON error body.
func TestHandshakeRefusals(t *testing.T) {
	f := newProto(t, 0, func(o *gateway.Options) { o.MaxConns = 2 })
	errorCode := func(t *testing.T, resp *http.Response) string {
		t.Helper()
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("error body: %v", err)
		}
		if body.Error.Message == "" {
			t.Errorf("error without message")
		}
		return body.Error.Code
	}
	for _, since := range []string{"garbage", "e1:-1", "e1:", ":5", "e%20x:1", "e1:1&since=e1:2"} {
		_, resp, err := rawDial(t, f.gw.URL, "?since="+since, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("since=%s: %v %v, want 400", since, resp, err)
		}
		if code := errorCode(t, resp); code != "invalid" {
			t.Errorf("since=%s: code %q", since, code)
		}
	}
	_, resp, err := rawDial(t, f.gw.URL, "", http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v, want 403", resp, err)
	}
	if code := errorCode(t, resp); code != "forbidden" {
		t.Errorf("origin code %q", code)
	}
	resp, err = http.Get(f.gw.URL + "/ws")
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET: %v %v, want 400", resp, err)
	}
	_ = resp.Body.Close()

	// Same origin is allowed; two connections fill the cap.
	host := strings.TrimPrefix(f.gw.URL, "http://")
	for range 2 {
		if _, _, err := rawDial(t, f.gw.URL, "", http.Header{"Origin": {"http://" + host}}); err != nil {
			t.Fatalf("same-origin dial: %v", err)
		}
	}
	_, resp, err = rawDial(t, f.gw.URL, "", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the cap: %v %v, want 503", resp, err)
	}
	if code := errorCode(t, resp); code != "unavailable" {
		t.Errorf("cap code %q", code)
	}
}

// AllowedOrigins lists origins; "*" allows any.
func TestAllowedOrigins(t *testing.T) {
	f := newProto(t, 0, func(o *gateway.Options) { o.AllowedOrigins = []string{"https://pixels.example"} })
	if _, _, err := rawDial(t, f.gw.URL, "", http.Header{"Origin": {"https://pixels.example"}}); err != nil {
		t.Fatalf("listed origin refused: %v", err)
	}
	if _, resp, err := rawDial(t, f.gw.URL, "", http.Header{"Origin": {"https://other.example"}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unlisted origin: %v", err)
	}
	any := newProto(t, 0, func(o *gateway.Options) { o.AllowedOrigins = []string{"*"} })
	if _, _, err := rawDial(t, any.gw.URL, "", http.Header{"Origin": {"https://anything.example"}}); err != nil {
		t.Fatalf("* refused: %v", err)
	}
}

// Close sends 1001 to every client.
func TestCloseSaysGoingAway(t *testing.T) {
	f := newProto(t, 0, nil)
	ws, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, ws)
	go f.gw.G.Close()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	_, _, err = ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("got %v, want close 1001", err)
	}
	if _, resp, err := rawDial(t, f.gw.URL, "", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after close: %v, want 503", err)
	}
}

// Canary entries keep sequence continuity: they travel in events frames
// marked "kind":"canary", and the gateway records their arrival.
func TestCanaryTravelsMarked(t *testing.T) {
	f := newProto(t, 2, nil)
	ws, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, ws)
	f.pub.PublishCanary()
	f.pub.Publish(1)
	var kinds []string
	for len(kinds) < 2 {
		for _, e := range readFrame(t, ws).Events {
			kinds = append(kinds, fmt.Sprintf("%d:%s", e.Seq, e.Kind))
		}
	}
	if !slices.Equal(kinds, []string{"3:canary", "4:"}) {
		t.Fatalf("events %v", kinds)
	}
	if f.gw.G.Stats().LastCanary.IsZero() {
		t.Fatal("LastCanary not recorded")
	}
}

func TestOptionsValidated(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	bad := []gateway.Options{
		{InstanceID: "a"},
		{Redis: rdb},
		{Redis: rdb, InstanceID: "a b"},
		{Redis: rdb, InstanceID: "a", QueueLen: 1},
		{Redis: rdb, InstanceID: "a", HeartbeatInterval: time.Minute},
	}
	for i, o := range bad {
		if _, err := gateway.New(o); err == nil {
			t.Errorf("options %d accepted", i)
		}
	}
	if _, err := gateway.New(gateway.Options{Redis: rdb, InstanceID: "gw-1.a_b"}); err != nil {
		t.Errorf("good options refused: %v", err)
	}
}

// manyRegions is a list of n region ids of a 1024×1024 canvas.
func manyRegions(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i%16 + i/16*canvas.RegionStride)
	}
	return strings.Join(ids, ",")
}

package lungo

// The journal's records (pixelflow patch 10, see journal.go): what a commit
// changed, found by comparing two catalogs, and its replay on a File.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/pixelflow/pixelflow/third_party/lungo/bsonkit"
	"github.com/pixelflow/pixelflow/third_party/lungo/mongokit"
)

// journalRecord is one commit: what it changed, per namespace.
type journalRecord struct {
	Namespaces []journalNamespace `bson:"ns"`
}

// journalNamespace is what a commit changed in one namespace. Replayed in
// this order: Drop; Create (an empty namespace with Indexes, then Inserts);
// else Indexes when SetIndexes, DropFront, Deletes, Replaces, Updates,
// Inserts, Appends. A document's _id is in at most one of Deletes,
// Replaces, Updates and Inserts.
type journalNamespace struct {
	Name       string               `bson:"n"`
	Drop       bool                 `bson:"drop,omitempty"`
	Create     bool                 `bson:"create,omitempty"`
	SetIndexes bool                 `bson:"setIdx,omitempty"`
	Indexes    map[string]FileIndex `bson:"idx,omitempty"`
	Deletes    bsonkit.List         `bson:"del,omitempty"` // {_id}
	Replaces   bsonkit.List         `bson:"rep,omitempty"` // whole documents, in place
	Updates    []journalUpdate      `bson:"upd,omitempty"`
	Inserts    bsonkit.List         `bson:"ins,omitempty"` // appended
	// DropFront and Appends: the first DropFront documents removed, then
	// Appends appended, by position (their _ids need not be unique).
	DropFront int          `bson:"dropFront,omitempty"`
	Appends   bsonkit.List `bson:"app,omitempty"`
}

// journalUpdate changes fields of one document. A path is a list of field
// names (names may hold dots); a set replaces the field or appends it to
// its document, an unset removes it.
type journalUpdate struct {
	ID     bsonkit.Doc  `bson:"id"`            // {_id}
	Sets   bsonkit.List `bson:"set,omitempty"` // {p: [names], v: value}
	Unsets bsonkit.List `bson:"uns,omitempty"` // {p: [names]}
}

// diffCatalogs returns the record that turns from into to, and how many
// namespaces it holds in full. Namespaces are copy-on-write: one that a
// commit did not write is the same collection in both.
func diffCatalogs(from, to *Catalog) (rec journalRecord, whole int) {
	for handle := range from.Namespaces {
		if _, ok := to.Namespaces[handle]; !ok {
			rec.Namespaces = append(rec.Namespaces, journalNamespace{Name: handle.String(), Drop: true})
		}
	}
	for handle, coll := range to.Namespaces {
		old, ok := from.Namespaces[handle]
		if ok && old == coll {
			continue
		}
		ns := journalNamespace{Name: handle.String()}
		if !ok || !diffDocuments(old.Documents.List, coll.Documents.List, &ns) {
			whole++
			ns = journalNamespace{Name: handle.String(), Create: true, SetIndexes: true, Indexes: fileIndexes(coll), Inserts: coll.Documents.List}
			if ok {
				// Replayed as Drop then Create: one record may hold the
				// name twice.
				rec.Namespaces = append(rec.Namespaces, journalNamespace{Name: handle.String(), Drop: true})
			}
			rec.Namespaces = append(rec.Namespaces, ns)
			continue
		}
		if !sameIndexes(old, coll) {
			ns.SetIndexes, ns.Indexes = true, fileIndexes(coll)
		}
		if ns.SetIndexes || ns.DropFront+len(ns.Deletes)+len(ns.Replaces)+len(ns.Updates)+len(ns.Inserts)+len(ns.Appends) > 0 {
			rec.Namespaces = append(rec.Namespaces, ns)
		}
	}
	return rec, whole
}

func fileIndexes(coll *mongokit.Collection) map[string]FileIndex {
	indexes := make(map[string]FileIndex, len(coll.Indexes))
	for name, index := range coll.Indexes {
		c := index.Config()
		indexes[name] = FileIndex{Key: c.Key, Unique: c.Unique, Partial: c.Partial, Expiry: c.Expiry}
	}
	return indexes
}

// sameIndexes compares configurations: a written collection is a clone
// whose indexes are clones too.
func sameIndexes(a, b *mongokit.Collection) bool {
	if len(a.Indexes) != len(b.Indexes) {
		return false
	}
	for name, ia := range a.Indexes {
		ib, ok := b.Indexes[name]
		if !ok || !ia.Config().Equal(ib.Config()) {
			return false
		}
	}
	return true
}

// docID returns a document's _id; ok is false without one.
func docID(doc bsonkit.Doc) (interface{}, bool) {
	for _, e := range *doc {
		if e.Key == "_id" {
			return e.Value, true
		}
	}
	return nil, false
}

// idKey is a map key for an _id value: its BSON type and bytes.
func idKey(v interface{}) (string, bool) {
	t, data, err := bson.MarshalValue(v)
	if err != nil {
		return "", false
	}
	return string(rune(t)) + string(data), true
}

func idDoc(id interface{}) bsonkit.Doc { return &bson.D{{Key: "_id", Value: id}} }

// diffDocuments fills ns with what turns list from into list to, per
// document, and reports whether it could: replaying deletes (keeping the
// order of the rest), replacements in place and appended inserts must give
// to's order. Documents are never changed in place, so an unchanged one is
// the same pointer in both.
func diffDocuments(from, to bsonkit.List, ns *journalNamespace) bool {
	// Fast path: documents dropped from the front and appended at the
	// end, the rest untouched (the oplog, the outbox). Recorded by
	// position: the oplog's _ids repeat after a restart within a second.
	if d := frontDeleted(from, to); d >= 0 {
		ns.DropFront, ns.Appends = d, to[len(from)-d:]
		return true
	}
	if len(from) == len(to) {
		// Fast path, the common commit: documents replaced in place.
		var changed []int
		for i := range to {
			if from[i] != to[i] {
				changed = append(changed, i)
			}
		}
		fast := true
		for _, i := range changed {
			a, okA := docID(from[i])
			b, okB := docID(to[i])
			if !okA || !okB || !mongokit.SameValue(a, b) {
				fast = false
				break
			}
		}
		if fast {
			for _, i := range changed {
				diffDocument(from[i], to[i], ns)
			}
			return true
		}
	}
	byID := make(map[string]int, len(from))
	for i, doc := range from {
		id, ok := docID(doc)
		if !ok {
			return false
		}
		k, ok := idKey(id)
		if !ok {
			return false
		}
		if _, dup := byID[k]; dup {
			return false
		}
		byID[k] = i
	}
	kept := make([]bool, len(from))
	last, inserting := -1, false
	for _, doc := range to {
		id, ok := docID(doc)
		if !ok {
			return false
		}
		k, ok := idKey(id)
		if !ok {
			return false
		}
		i, ok := byID[k]
		if !ok {
			inserting = true
			ns.Inserts = append(ns.Inserts, doc)
			continue
		}
		if inserting || i <= last || kept[i] {
			return false // not the order a replay gives
		}
		last, kept[i] = i, true
		if from[i] != doc {
			diffDocument(from[i], doc, ns)
		}
	}
	for i, doc := range from {
		if !kept[i] {
			id, _ := docID(doc)
			ns.Deletes = append(ns.Deletes, idDoc(id))
		}
	}
	return true
}

// frontDeleted returns how many documents of from were deleted from its
// front when to is the rest of from, unchanged, followed by appended
// documents; -1 when it is not, or when nothing of from is kept (a large
// collection whose first document changed would be recorded whole).
func frontDeleted(from, to bsonkit.List) int {
	if len(from) == 0 || len(to) == 0 {
		return -1
	}
	d := 0
	for d < len(from) && from[d] != to[0] {
		d++
	}
	keep := len(from) - d
	if keep == 0 || keep > len(to) {
		return -1
	}
	for i := range keep {
		if from[d+i] != to[i] {
			return -1
		}
	}
	return d
}

// diffDocument records the change of one document as field sets and
// unsets, or as a replacement when they cannot express it.
func diffDocument(from, to bsonkit.Doc, ns *journalNamespace) {
	var u journalUpdate
	if !diffD(nil, *from, *to, &u) {
		ns.Replaces = append(ns.Replaces, to)
		return
	}
	if len(u.Sets)+len(u.Unsets) == 0 {
		return
	}
	id, _ := docID(to)
	u.ID = idDoc(id)
	ns.Updates = append(ns.Updates, u)
}

// diffD adds the sets and unsets that turn a into b (both at path) to u;
// false when fields were reordered or a new one is not at the end, which
// a replay (sets append new fields) would not reproduce.
func diffD(path bson.A, a, b bson.D, u *journalUpdate) bool {
	if len(a) == len(b) && len(a) > 0 && &a[0] == &b[0] {
		return true // shared: unchanged (lungo patch 6)
	}
	var inA, inB map[string]bool
	keys := func(d bson.D) map[string]bool {
		m := make(map[string]bool, len(d))
		for _, e := range d {
			m[e.Key] = true
		}
		return m
	}
	at := func(key string) bson.A {
		p := make(bson.A, len(path)+1)
		copy(p, path)
		p[len(path)] = key
		return p
	}
	set := func(key string, v interface{}) {
		u.Sets = append(u.Sets, &bson.D{{Key: "p", Value: at(key)}, {Key: "v", Value: v}})
	}
	unset := func(key string) {
		u.Unsets = append(u.Unsets, &bson.D{{Key: "p", Value: at(key)}})
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i].Key == b[j].Key {
			if !mongokit.SameValue(a[i].Value, b[j].Value) {
				da, okA := a[i].Value.(bson.D)
				db, okB := b[j].Value.(bson.D)
				if !okA || !okB || !diffD(at(a[i].Key), da, db, u) {
					set(b[j].Key, b[j].Value)
				}
			}
			i, j = i+1, j+1
			continue
		}
		if inB == nil {
			inB = keys(b)
		}
		if inB[a[i].Key] {
			return false // b[j] is new, but not at the end
		}
		unset(a[i].Key)
		i++
	}
	for ; i < len(a); i++ {
		if inB == nil {
			inB = keys(b)
		}
		if inB[a[i].Key] {
			return false
		}
		unset(a[i].Key)
	}
	for ; j < len(b); j++ {
		// A field appended to a (a keyed write's new key) is checked by a
		// scan; a map of a's keys only pays for itself for many.
		if inA == nil && len(b)-j > 8 {
			inA = keys(a)
		}
		if inA != nil && inA[b[j].Key] || inA == nil && hasKey(a, b[j].Key) {
			return false
		}
		set(b[j].Key, b[j].Value)
	}
	return true
}

func hasKey(d bson.D, key string) bool {
	for _, e := range d {
		if e.Key == key {
			return true
		}
	}
	return false
}

// replayJournal applies the records to file and returns how many bytes of
// records are whole; the rest is a torn tail.
func replayJournal(file *File, records []byte) (int, error) {
	states := map[string]*replayNS{}
	off := 0
	for {
		rest := records[off:]
		if len(rest) < recordHeaderSize {
			break
		}
		n := int(binary.LittleEndian.Uint32(rest))
		if n > maxRecordSize || len(rest)-recordHeaderSize < n {
			break
		}
		payload := rest[recordHeaderSize : recordHeaderSize+n]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
			break
		}
		var rec journalRecord
		if err := bson.Unmarshal(payload, &rec); err != nil {
			return 0, fmt.Errorf("record at %d: %w", journalHeaderSize+off, err)
		}
		if err := rec.apply(file, states); err != nil {
			return 0, fmt.Errorf("record at %d: %w", journalHeaderSize+off, err)
		}
		off += recordHeaderSize + n
	}
	for name, st := range states {
		ns := file.Namespaces[name]
		ns.Documents = st.list()
		file.Namespaces[name] = ns
	}
	return off, nil
}

// replayNS is a namespace being replayed: its documents with holes where
// deleted ones were, and where each _id is. The documents were decoded by
// this load and nothing else holds them, so updates change them in place.
type replayNS struct {
	docs bsonkit.List
	byID map[string]int // the last document with each _id
	head int            // no live document before it
}

func newReplayNS(docs bsonkit.List) (*replayNS, error) {
	st := &replayNS{docs: docs, byID: make(map[string]int, len(docs))}
	for i, d := range docs {
		k, err := replayKey(d)
		if err != nil {
			return nil, err
		}
		st.byID[k] = i
	}
	return st, nil
}

func (st *replayNS) list() bsonkit.List {
	out := make(bsonkit.List, 0, len(st.byID))
	for _, d := range st.docs {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

func replayKey(d bsonkit.Doc) (string, error) {
	id, ok := docID(d)
	if !ok {
		return "", errors.New("document without _id")
	}
	k, ok := idKey(id)
	if !ok {
		return "", fmt.Errorf("unencodable _id %v", id)
	}
	return k, nil
}

func (rec journalRecord) apply(file *File, states map[string]*replayNS) error {
	for _, jn := range rec.Namespaces {
		if jn.Drop {
			delete(file.Namespaces, jn.Name)
			delete(states, jn.Name)
			continue
		}
		if jn.Create {
			file.Namespaces[jn.Name] = FileNamespace{Indexes: jn.Indexes}
			st, err := newReplayNS(append(bsonkit.List(nil), jn.Inserts...))
			if err != nil {
				return fmt.Errorf("%s: %w", jn.Name, err)
			}
			states[jn.Name] = st
			continue
		}
		ns, ok := file.Namespaces[jn.Name]
		if !ok {
			return fmt.Errorf("%s: changes to a namespace that does not exist", jn.Name)
		}
		if jn.SetIndexes {
			ns.Indexes = jn.Indexes
			file.Namespaces[jn.Name] = ns
		}
		st := states[jn.Name]
		if st == nil {
			var err error
			if st, err = newReplayNS(ns.Documents); err != nil {
				return fmt.Errorf("%s: %w", jn.Name, err)
			}
			states[jn.Name] = st
		}
		find := func(d bsonkit.Doc) (string, int, error) {
			k, err := replayKey(d)
			if err != nil {
				return "", 0, err
			}
			i, ok := st.byID[k]
			if !ok {
				return "", 0, fmt.Errorf("no document with _id %v", bsonkit.Get(d, "_id"))
			}
			return k, i, nil
		}
		for n := jn.DropFront; n > 0; n-- {
			for st.head < len(st.docs) && st.docs[st.head] == nil {
				st.head++
			}
			if st.head == len(st.docs) {
				return fmt.Errorf("%s: %d documents to drop from the front, fewer there", jn.Name, jn.DropFront)
			}
			if k, err := replayKey(st.docs[st.head]); err == nil && st.byID[k] == st.head {
				delete(st.byID, k)
			}
			st.docs[st.head] = nil
			st.head++
		}
		for _, d := range jn.Deletes {
			k, i, err := find(d)
			if err != nil {
				return fmt.Errorf("%s: delete: %w", jn.Name, err)
			}
			st.docs[i] = nil
			delete(st.byID, k)
		}
		for _, d := range jn.Replaces {
			_, i, err := find(d)
			if err != nil {
				return fmt.Errorf("%s: replace: %w", jn.Name, err)
			}
			st.docs[i] = d
		}
		for _, u := range jn.Updates {
			_, i, err := find(u.ID)
			if err != nil {
				return fmt.Errorf("%s: update: %w", jn.Name, err)
			}
			d := *st.docs[i]
			for _, s := range u.Sets {
				p, err := replayPath(s)
				if err != nil {
					return fmt.Errorf("%s: update: %w", jn.Name, err)
				}
				if d, err = setPath(d, p, bsonkit.Get(s, "v")); err != nil {
					return fmt.Errorf("%s: update: %w", jn.Name, err)
				}
			}
			for _, s := range u.Unsets {
				p, err := replayPath(s)
				if err != nil {
					return fmt.Errorf("%s: update: %w", jn.Name, err)
				}
				if d, err = unsetPath(d, p); err != nil {
					return fmt.Errorf("%s: update: %w", jn.Name, err)
				}
			}
			*st.docs[i] = d
		}
		for _, d := range jn.Inserts {
			k, err := replayKey(d)
			if err != nil {
				return fmt.Errorf("%s: insert: %w", jn.Name, err)
			}
			if _, dup := st.byID[k]; dup {
				return fmt.Errorf("%s: insert: a second document with _id %v", jn.Name, bsonkit.Get(d, "_id"))
			}
			st.byID[k] = len(st.docs)
			st.docs = append(st.docs, d)
		}
		for _, d := range jn.Appends {
			k, err := replayKey(d)
			if err != nil {
				return fmt.Errorf("%s: append: %w", jn.Name, err)
			}
			st.byID[k] = len(st.docs)
			st.docs = append(st.docs, d)
		}
	}
	return nil
}

func replayPath(op bsonkit.Doc) ([]string, error) {
	a, ok := bsonkit.Get(op, "p").(bson.A)
	if !ok || len(a) == 0 {
		return nil, errors.New("an operation without a path")
	}
	p := make([]string, len(a))
	for i, v := range a {
		if p[i], ok = v.(string); !ok {
			return nil, fmt.Errorf("path element %v is no name", v)
		}
	}
	return p, nil
}

// setPath sets the field at p in d (appending it when missing); every
// document along p exists (a diff recurses only into documents on both
// sides).
func setPath(d bson.D, p []string, v interface{}) (bson.D, error) {
	for i := range d {
		if d[i].Key != p[0] {
			continue
		}
		if len(p) == 1 {
			d[i].Value = v
			return d, nil
		}
		sub, ok := d[i].Value.(bson.D)
		if !ok {
			return nil, fmt.Errorf("field %q is no document", p[0])
		}
		sub, err := setPath(sub, p[1:], v)
		if err != nil {
			return nil, err
		}
		d[i].Value = sub
		return d, nil
	}
	if len(p) > 1 {
		return nil, fmt.Errorf("no document %q along the path", p[0])
	}
	return append(d, bson.E{Key: p[0], Value: v}), nil
}

func unsetPath(d bson.D, p []string) (bson.D, error) {
	for i := range d {
		if d[i].Key != p[0] {
			continue
		}
		if len(p) == 1 {
			return append(d[:i], d[i+1:]...), nil
		}
		sub, ok := d[i].Value.(bson.D)
		if !ok {
			return nil, fmt.Errorf("field %q is no document", p[0])
		}
		sub, err := unsetPath(sub, p[1:])
		if err != nil {
			return nil, err
		}
		d[i].Value = sub
		return d, nil
	}
	return nil, fmt.Errorf("no field %q to unset", p[0])
}

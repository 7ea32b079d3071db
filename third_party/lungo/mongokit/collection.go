package mongokit

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/pixelflow/pixelflow/third_party/lungo/bsonkit"
)

// TODO: Test Collection.

// docsEqual reports whether two documents are byte-identical when serialized
// to BSON. This matches MongoDB's nModified semantics: a document only counts
// as modified if its serialized bytes change.
//
// pixelflow patch (see PATCHES.md): the documents are compared field by
// field, with the same result as comparing their BSON bytes, instead of
// marshalling both (which dominated the cost of updating a large document).
func docsEqual(a, b bsonkit.Doc) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameD(*a, *b)
}

func sameD(a, b bson.D) bool {
	if len(a) != len(b) {
		return false
	}
	// A part an update did not touch is shared by the old and the new
	// document (patch 6): the same elements, equal without a walk.
	if len(a) > 0 && &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if a[i].Key != b[i].Key || !sameValue(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// SameValue reports whether a and b encode to the same BSON bytes (see
// sameValue); the file store's journal diffs documents with it.
func SameValue(a, b interface{}) bool { return sameValue(a, b) }

// sameValue reports whether a and b encode to the same BSON bytes: the same
// type and the same value (floats bit for bit). Types it does not know are
// compared by their encoding.
func sameValue(a, b interface{}) bool {
	switch av := a.(type) {
	case nil:
		return b == nil
	case bson.D:
		bv, ok := b.(bson.D)
		return ok && sameD(av, bv)
	case bson.A:
		bv, ok := b.(bson.A)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !sameValue(av[i], bv[i]) {
				return false
			}
		}
		return true
	case float64:
		bv, ok := b.(float64)
		return ok && math.Float64bits(av) == math.Float64bits(bv)
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case int32:
		bv, ok := b.(int32)
		return ok && av == bv
	case int64:
		bv, ok := b.(int64)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case primitive.DateTime:
		bv, ok := b.(primitive.DateTime)
		return ok && av == bv
	case primitive.ObjectID:
		bv, ok := b.(primitive.ObjectID)
		return ok && av == bv
	case primitive.Timestamp:
		bv, ok := b.(primitive.Timestamp)
		return ok && av == bv
	case primitive.Decimal128:
		bv, ok := b.(primitive.Decimal128)
		return ok && av == bv
	case primitive.Binary:
		bv, ok := b.(primitive.Binary)
		return ok && av.Subtype == bv.Subtype && bytes.Equal(av.Data, bv.Data)
	}
	aBytes, errA := bson.Marshal(bson.D{{Key: "v", Value: a}})
	bBytes, errB := bson.Marshal(bson.D{{Key: "v", Value: b}})
	return errA == nil && errB == nil && bytes.Equal(aBytes, bBytes)
}

// Result is returned by collection operations.
type Result struct {
	// The list of found or deleted documents.
	Matched bsonkit.List

	// The list of inserted, replaced or updated documents.
	Modified bsonkit.List

	// The upserted document.
	Upserted bsonkit.Doc

	// The changes applied to updated documents.
	Changes []*Changes
}

// Collection combines a set and multiple indexes to form a basic MongoDB like
// collection that offers basic CRUD capabilities. The collection is not safe
// from concurrent access and does not roll back changes on errors. Therefore,
// the recommended approach is to clone the collection before making changes.
type Collection struct {
	Documents *bsonkit.Set
	Indexes   map[string]*Index
}

// NewCollection will create and return a new collection.
func NewCollection(idIndex bool) *Collection {
	// create collection
	coll := &Collection{
		Documents: bsonkit.NewSet(nil),
		Indexes:   map[string]*Index{},
	}

	// add default index if requested
	if idIndex {
		var err error
		coll.Indexes["_id_"], err = CreateIndex(IndexConfig{
			Key: bsonkit.MustConvert(bson.M{
				"_id": int32(1),
			}),
			Unique: true,
		})
		if err != nil {
			panic(err)
		}
	}

	return coll
}

// Find will look up the documents that match the specified query.
func (c *Collection) Find(query, sort bsonkit.Doc, skip, limit int) (*Result, error) {
	// get documents
	list := c.Documents.List

	// sort documents
	var err error
	if sort != nil && len(*sort) > 0 {
		list, err = Sort(list, sort)
		if err != nil {
			return nil, err
		}
	}

	// adjust limit
	if limit > 0 {
		limit += skip
	}

	// filter documents
	list, err = Filter(list, query, limit)
	if err != nil {
		return nil, err
	}

	// apply skip
	if skip > len(list) {
		list = nil
	} else {
		list = list[skip:]
	}

	return &Result{
		Matched: list,
	}, nil
}

// Insert will add the specified document to the collection.
func (c *Collection) Insert(doc bsonkit.Doc) (*Result, error) {
	// ensure object id
	if bsonkit.Get(doc, "_id") == bsonkit.Missing {
		_, err := bsonkit.Put(doc, "_id", primitive.NewObjectID(), true)
		if err != nil {
			return nil, err
		}
	}

	// add document to all indexes
	for name, index := range c.Indexes {
		ok, err := index.Add(doc)
		if err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("duplicate document for index %q", name)
		}
	}

	// add document
	if !c.Documents.Add(doc) {
		return nil, fmt.Errorf("unable to add document to collection")
	}

	return &Result{
		Modified: bsonkit.List{doc},
	}, nil
}

// Replace will look up the first document that matches the query and if found
// replace it with the specified document.
func (c *Collection) Replace(query, repl, sort bsonkit.Doc) (*Result, error) {
	// get documents
	list := c.Documents.List

	// sort documents
	var err error
	if sort != nil && len(*sort) > 0 {
		list, err = Sort(list, sort)
		if err != nil {
			return nil, err
		}
	}

	// filter documents
	list, err = Filter(list, query, 1)
	if err != nil {
		return nil, err
	}

	// check list
	if len(list) == 0 {
		return &Result{}, nil
	}

	// set missing id or check existing id
	replID := bsonkit.Get(repl, "_id")
	if replID == bsonkit.Missing {
		_, err = bsonkit.Put(repl, "_id", bsonkit.Get(list[0], "_id"), true)
		if err != nil {
			return nil, err
		}
	} else if replID != bsonkit.Get(list[0], "_id") {
		return nil, fmt.Errorf("document _id is immutable")
	}

	// update indexes
	for name, index := range c.Indexes {
		// remove old document
		ok, err := index.Remove(list[0])
		if err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("unable to remove document from index %q", name)
		}

		// add replacement
		ok, err = index.Add(repl)
		if err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("duplicate document for index %q", name)
		}
	}

	// replace document
	if !c.Documents.Replace(list[0], repl) {
		return nil, fmt.Errorf("unable to replace document in collection")
	}

	// only count the doc as modified if its BSON bytes actually changed; a
	// replace with a byte-identical document yields ModifiedCount=0 in MongoDB
	var modified bsonkit.List
	if !docsEqual(list[0], repl) {
		modified = bsonkit.List{repl}
	}

	return &Result{
		Matched:  list,
		Modified: modified,
	}, nil
}

// Update will look up all documents that match the specified query and update
// them according to the update document.
func (c *Collection) Update(query, update, sort bsonkit.Doc, skip, limit int, arrayFilters bsonkit.List) (*Result, error) {
	// get documents
	list := c.Documents.List

	// sort documents
	var err error
	if sort != nil && len(*sort) > 0 {
		list, err = Sort(list, sort)
		if err != nil {
			return nil, err
		}
	}

	// adjust limit
	if limit > 0 {
		limit += skip
	}

	// filter documents
	list, err = Filter(list, query, limit)
	if err != nil {
		return nil, err
	}

	// apply skip
	if skip > len(list) {
		list = nil
	} else {
		list = list[skip:]
	}

	// check list
	if len(list) == 0 {
		return &Result{}, nil
	}

	// clone documents (pixelflow patch 6: only the containers the update's
	// paths lead through, when its operators touch nothing else)
	var newList bsonkit.List
	if paths, ok := updatePaths(update); ok {
		newList = make(bsonkit.List, len(list))
		for i, doc := range list {
			newList[i] = clonePaths(doc, paths)
		}
	} else {
		newList = bsonkit.CloneList(list)
	}

	// update documents
	changes, err := Update(newList, query, update, false, arrayFilters)
	if err != nil {
		return nil, err
	}

	// check ids
	for i, doc := range newList {
		if bsonkit.Get(doc, "_id") != bsonkit.Get(list[i], "_id") {
			return nil, fmt.Errorf("document _id is immutable")
		}
	}

	// remove old docs from indexes
	for _, doc := range list {
		for name, index := range c.Indexes {
			ok, err := index.Remove(doc)
			if err != nil {
				return nil, err
			} else if !ok {
				return nil, fmt.Errorf("unable to remove document document from index %q", name)
			}
		}
	}

	// add new docs to indexes
	for _, doc := range newList {
		for name, index := range c.Indexes {
			ok, err := index.Add(doc)
			if err != nil {
				return nil, err
			} else if !ok {
				return nil, fmt.Errorf("duplicate document for index %q", name)
			}
		}
	}

	// replace documents
	for i, doc := range newList {
		if !c.Documents.Replace(list[i], doc) {
			return nil, fmt.Errorf("unable to replace document in collection")
		}
	}

	// only include actually-modified docs in Modified/Changes (matches
	// MongoDB's nModified, which excludes no-op updates such as $set with
	// the same value). Matched still lists every doc that satisfied the query.
	modified := make(bsonkit.List, 0, len(newList))
	filteredChanges := make([]*Changes, 0, len(changes))
	for i, doc := range newList {
		if docsEqual(list[i], doc) {
			continue
		}
		modified = append(modified, doc)
		filteredChanges = append(filteredChanges, changes[i])
	}

	return &Result{
		Matched:  list,
		Modified: modified,
		Changes:  filteredChanges,
	}, nil
}

// Upsert will insert a document based on the specified query and either the
// replacement document or update document.
func (c *Collection) Upsert(query, repl, update bsonkit.Doc, arrayFilters bsonkit.List) (*Result, error) {
	// extract query
	doc, err := Extract(query)
	if err != nil {
		return nil, err
	}

	// check exclusiveness
	if repl != nil && update != nil {
		return nil, fmt.Errorf("cannot upsert with replacement and update")
	}

	// set replacement if present
	if repl != nil {
		// get ids
		queryID := bsonkit.Get(doc, "_id")
		replID := bsonkit.Get(repl, "_id")

		// check ids
		if queryID != bsonkit.Missing && replID != bsonkit.Missing {
			if bsonkit.Compare(replID, queryID) != 0 {
				return nil, fmt.Errorf("query _id and replacement _id must match")
			}
		}

		// clone replacement
		doc = bsonkit.Clone(repl)

		// add repl or query id if present
		if replID != bsonkit.Missing {
			_, err = bsonkit.Put(doc, "_id", replID, true)
			if err != nil {
				return nil, err
			}
		} else if queryID != bsonkit.Missing {
			_, err = bsonkit.Put(doc, "_id", queryID, true)
			if err != nil {
				return nil, err
			}
		}
	}

	// apply update if present
	if update != nil {
		_, err = Apply(doc, query, update, true, arrayFilters)
		if err != nil {
			return nil, err
		}
	}

	// generate object id if missing
	if bsonkit.Get(doc, "_id") == bsonkit.Missing {
		_, err := bsonkit.Put(doc, "_id", primitive.NewObjectID(), true)
		if err != nil {
			return nil, err
		}
	}

	// add document to indexes
	for name, index := range c.Indexes {
		ok, err := index.Add(doc)
		if err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("duplicate document for index %q", name)
		}
	}

	// add document
	if !c.Documents.Add(doc) {
		return nil, fmt.Errorf("unable to add document to collection")
	}

	return &Result{
		Upserted: doc,
	}, nil
}

// Delete will remove all documents that match the specified query.
func (c *Collection) Delete(query, sort bsonkit.Doc, skip, limit int) (*Result, error) {
	// get documents
	list := c.Documents.List

	// sort documents
	var err error
	if sort != nil && len(*sort) > 0 {
		list, err = Sort(list, sort)
		if err != nil {
			return nil, err
		}
	}

	// adjust limit
	if limit > 0 {
		limit += skip
	}

	// filter documents
	list, err = Filter(list, query, limit)
	if err != nil {
		return nil, err
	}

	// apply skip
	if skip > len(list) {
		list = nil
	} else {
		list = list[skip:]
	}

	// update indexes
	for _, doc := range list {
		for name, index := range c.Indexes {
			ok, err := index.Remove(doc)
			if err != nil {
				return nil, err
			} else if !ok {
				return nil, fmt.Errorf("unable to remove document from index %q", name)
			}
		}
	}

	// remove documents
	for _, doc := range list {
		if !c.Documents.Remove(doc) {
			return nil, fmt.Errorf("unable to remove document from collection")
		}
	}

	return &Result{
		Matched: list,
	}, nil
}

// CreateIndex will create and build an index based on the specified
// configuration. If the index name is missing, it will be generated from the
// config and returned.
func (c *Collection) CreateIndex(name string, config IndexConfig) (string, error) {
	// prepare error
	var err error

	// compute name if missing
	if name == "" {
		name, err = config.Name()
		if err != nil {
			return "", err
		}
	}

	// return if existing index is equal
	if index, ok := c.Indexes[name]; ok {
		if config.Equal(index.Config()) {
			return name, nil
		}
	}

	// check duplicate
	for name, index := range c.Indexes {
		if bsonkit.Compare(*config.Key, *index.Config().Key) == 0 {
			return "", fmt.Errorf("existing index %q has same key", name)
		}
	}

	// create index
	index, err := CreateIndex(config)
	if err != nil {
		return "", err
	}

	// add index
	c.Indexes[name] = index

	// build index
	ok, err := index.Build(c.Documents.List)
	if err != nil {
		return "", err
	} else if !ok {
		return "", fmt.Errorf("duplicate document for index %q", name)
	}

	return name, nil
}

// DropIndex will drop the specific index or drop all indexes if no name has
// been specified.
func (c *Collection) DropIndex(name string) ([]string, error) {
	// collect dropped
	var dropped []string

	// drop single index
	if name != "" {
		// check existence
		if _, ok := c.Indexes[name]; !ok {
			return nil, fmt.Errorf("missing index %q", name)
		}

		// drop index
		delete(c.Indexes, name)

		// add name
		dropped = append(dropped, name)
	}

	// drop all indexes
	if name == "" {
		for name := range c.Indexes {
			if name != "_id_" {
				// drop index
				delete(c.Indexes, name)

				// add name
				dropped = append(dropped, name)
			}
		}
	}

	return dropped, nil
}

// Clone will clone the collection.
func (c *Collection) Clone() *Collection {
	// create new collection
	clone := &Collection{
		Documents: c.Documents.Clone(),
		Indexes:   map[string]*Index{},
	}

	// clone indexes
	for name, index := range c.Indexes {
		clone.Indexes[name] = index.Clone()
	}

	return clone
}

// pathCopyOps are the update operators that change a document only at the
// paths they name: a value put, replaced or removed there, never an array
// changed in place. An update made only of these needs a private copy of
// the containers along its paths, not of the whole document.
var pathCopyOps = map[string]bool{
	"$set": true, "$setOnInsert": true, "$unset": true, "$inc": true,
	"$mul": true, "$max": true, "$min": true, "$currentDate": true,
}

// pathTree holds the field paths an update names, one level per segment;
// an empty node is the end of a path.
type pathTree map[string]pathTree

// updatePaths returns the field paths an update document names, and
// whether clonePaths suffices for it: every operator is in pathCopyOps and
// no path has a positional ($) segment. Anything else (a replacement
// document, other operators, positional paths) needs a whole clone. A
// numeric segment is a key of a document (pixelflow's tiles: "p.99.c") or
// an index of an array, which clonePaths meets and then clones whole.
func updatePaths(update bsonkit.Doc) (pathTree, bool) {
	if update == nil || len(*update) == 0 {
		return nil, false
	}
	tree := pathTree{}
	for _, op := range *update {
		if !pathCopyOps[op.Key] {
			return nil, false
		}
		fields, ok := op.Value.(bson.D)
		if !ok {
			return nil, false
		}
		for _, f := range fields {
			node := tree
			for _, seg := range strings.Split(f.Key, ".") {
				if seg == "" || strings.HasPrefix(seg, "$") {
					return nil, false
				}
				next := node[seg]
				if next == nil {
					next = pathTree{}
					node[seg] = next
				}
				node = next
			}
		}
	}
	return tree, true
}

// clonePaths copies doc and, along every path, the documents the path leads
// through, so that applying the update to the copy changes nothing doc
// shares with it: the rest of the document (for a tile of 256 pixels, the
// 255 others) is shared, as documents are never changed in place (see
// patch 3). A path that meets an array gets a whole clone.
func clonePaths(doc bsonkit.Doc, paths pathTree) bsonkit.Doc {
	out, ok := cloneAlong(*doc, paths)
	if !ok {
		return bsonkit.Clone(doc)
	}
	return &out
}

func cloneAlong(d bson.D, t pathTree) (bson.D, bool) {
	out := make(bson.D, len(d))
	copy(out, d)
	for key, sub := range t {
		if len(sub) == 0 {
			continue // the path ends here: the update replaces the value
		}
		i := slices.IndexFunc(out, func(e bson.E) bool { return e.Key == key })
		if i < 0 {
			continue // the update creates the rest, fresh
		}
		switch v := out[i].Value.(type) {
		case bson.D:
			c, ok := cloneAlong(v, sub)
			if !ok {
				return nil, false
			}
			out[i].Value = c
		case bson.A:
			return nil, false
		}
		// any other value in the way: the update fails, doc untouched
	}
	return out, true
}

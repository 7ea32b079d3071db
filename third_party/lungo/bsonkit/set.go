package bsonkit

// Set is set of unique documents. The set is not safe from concurrent access.
//
// pixelflow patch 7: the position index is built only when the set is large
// (more than smallSet documents) and only when a mutation needs it; a small
// set finds a document by scanning its list, and so does a read-only lookup
// in a large set whose clone has not been mutated. Every write operation clones the
// sets it touches (copy-on-write), and for the small collections of a write
// path (a few tiles, the pending outbox, the bounded oplog) copying the index
// map cost more than all the scans it saved.
type Set struct {
	List List

	// index maps each document to its position in List; nil until a
	// mutation of a set of more than smallSet documents builds it.
	index map[Doc]int
}

// smallSet is the size up to which a set finds documents by scanning.
const smallSet = 32

// scanAdd is the size up to which Add checks for the document by scanning
// rather than building the index (pixelflow patch 8): every write clones
// the bounded oplog and appends to it, and building the clone's index for
// that one append was 14 % of all allocation at 1,000 writes/s, where a
// scan of its pointers costs less than the map's first bucket.
const scanAdd = 1024

// NewSet returns a new set from the specified list.
func NewSet(list List) *Set {
	// create set
	set := &Set{}

	// add documents
	for _, doc := range list {
		set.Add(doc)
	}

	return set
}

// Position returns the position of the document in List, if it is in the
// set. It only reads the set (a set shared by committed catalogs may be
// read concurrently): without an index it scans.
func (s *Set) Position(doc Doc) (int, bool) {
	if s.index != nil {
		i, ok := s.index[doc]
		return i, ok
	}
	for i, d := range s.List {
		if d == doc {
			return i, true
		}
	}
	return 0, false
}

// indexed builds the index of a large set before a mutation looks a
// document up; mutations only happen on a set its caller owns.
func (s *Set) indexed() *Set {
	if s.index == nil && len(s.List) > smallSet {
		s.index = make(map[Doc]int, len(s.List))
		for i, d := range s.List {
			s.index[d] = i
		}
	}
	return s
}

// Add will add the document to set, if has not already been added. It may return
// false if the document has already been added.
func (s *Set) Add(doc Doc) bool {
	// check if already added
	if s.index == nil && len(s.List) <= scanAdd {
		if _, ok := s.Position(doc); ok {
			return false
		}
	} else if _, ok := s.indexed().Position(doc); ok {
		return false
	}

	// append document
	s.List = append(s.List, doc)
	if s.index != nil {
		s.index[doc] = len(s.List) - 1
	}

	return true
}

// Replace will replace the first document with the second. It may return false
// if the first document has not been added and the second already has been added.
func (s *Set) Replace(d1, d2 Doc) bool {
	// get index
	index, ok := s.indexed().Position(d1)
	if !ok {
		return false
	}

	// check existence
	if _, ok := s.Position(d2); ok {
		return false
	}

	// replace document
	s.List[index] = d2

	// update index
	if s.index != nil {
		delete(s.index, d1)
		s.index[d2] = index
	}

	return true
}

// Remove will remove the document from the set. It may return false if the
// document has not been added to the set.
func (s *Set) Remove(doc Doc) bool {
	// check if document has been added
	i, ok := s.indexed().Position(doc)
	if !ok {
		return false
	}

	// remove document
	s.List = append(s.List[:i], s.List[i+1:]...)

	// update index
	if s.index != nil {
		delete(s.index, doc)
		for ; i < len(s.List); i++ {
			s.index[s.List[i]] = i
		}
	}

	return true
}

// Clone will clone the set. Mutating the new set will not mutate the original
// set. The clone's index is built again when a lookup needs it.
func (s *Set) Clone() *Set {
	// prepare clone, with room for a few appends: a clone is made to be
	// written, and the oplog's clone is appended to by every write, which
	// otherwise reallocated the list at once (pixelflow patch 8)
	clone := &Set{
		List: make(List, len(s.List), len(s.List)+len(s.List)/8+4),
	}

	// copy list
	copy(clone.List, s.List)

	return clone
}

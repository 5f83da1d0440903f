package mongo

import (
	"context"
	"errors"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"crs/fhir"
	"crs/fhir/store"
)

// journalDoc is a write in flight on a deployment without transactions. Its
// changes are pending documents (marked with the journal's id) that no one else
// sees; the write commits by setting State to "committing" and then applying
// them. A journal a crash leaves is finished when the store opens: applied if it
// was committing, dropped otherwise.
type journalDoc struct {
	ID    string `bson:"_id"`
	State string `bson:"state"` // open, committing
}

// txn is the store.Tx of one Write.
type txn struct {
	reader
	s *Store
}

// Write runs fn atomically: in a multi-document transaction where the
// deployment has them, otherwise as a journal write.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.transactions {
		return s.writeInTransaction(ctx, fn)
	}
	return s.writeWithJournal(ctx, fn)
}

func (s *Store) writeInTransaction(ctx context.Context, fn func(store.Tx) error) error {
	sess, err := s.client.StartSession()
	if err != nil {
		return internal("write", err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		t := &txn{reader: reader{s: s, ctx: sc}, s: s}
		return nil, runFn(fn, t)
	})
	return internal("write", err)
}

func (s *Store) writeWithJournal(ctx context.Context, fn func(store.Tx) error) error {
	id := fhir.NewUUID()
	if _, err := s.jrn.InsertOne(ctx, journalDoc{ID: id, State: "open"}); err != nil {
		return internal("write", err)
	}
	seq, rid := s.seq, s.rid
	t := &txn{reader: reader{s: s, journal: id}, s: s}
	bg := context.WithoutCancel(ctx)
	if err := runFn(fn, t); err != nil {
		s.seq, s.rid = seq, rid
		if aerr := s.abort(bg, id); aerr != nil {
			s.log.Error("MongoDB store: dropping a failed write failed; it is retried when the store opens", "journal", id, "error", aerr.Error())
		}
		return err
	}
	// The commit point.
	if _, err := s.jrn.UpdateOne(bg, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: "committing"}}}}); err != nil {
		s.seq, s.rid = seq, rid
		_ = s.abort(bg, id)
		return internal("commit", err)
	}
	s.lock.Lock() // readers wait while the pending changes are applied
	err := s.apply(bg, id)
	s.lock.Unlock()
	if err != nil {
		s.log.Error("MongoDB store: applying a committed write failed; it is finished when the store opens", "journal", id, "error", err.Error())
		return internal("commit", err)
	}
	return nil
}

// runFn calls fn, turning a panic into an error.
func runFn(fn func(store.Tx) error, t *txn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fhir.InternalError("write", errors.New("panic in a write"))
		}
	}()
	return fn(t)
}

// apply makes a committing journal's pending changes the current state. It
// works in few, set-wise operations (a MongoDB-wire server without filter
// push-down for updates scans the collection once per operation): new
// resources are inserted together, replaced ones one by one, the pending
// documents dropped and the versions marked in one operation each.
func (s *Store) apply(ctx context.Context, id string) error {
	cur, err := s.res.Find(ctx, bson.D{{Key: "pend", Value: id}})
	if err != nil {
		return err
	}
	var pending []resourceDoc
	if err := cur.All(ctx, &pending); err != nil {
		return err
	}
	var fresh []any
	for _, p := range pending {
		replaces := p.Locked == "replace"
		p.ID, p.Pend, p.Locked = p.Key, "", ""
		if !replaces {
			fresh = append(fresh, p)
			continue
		}
		if _, err := s.res.ReplaceOne(ctx, bson.D{{Key: "_id", Value: p.Key}}, p, options.Replace().SetUpsert(true)); err != nil {
			return err
		}
	}
	if len(fresh) > 0 {
		_, err := s.res.InsertMany(ctx, fresh, options.InsertMany().SetOrdered(false))
		if mongo.IsDuplicateKeyError(err) {
			// apply re-run after a crash: some were inserted already.
			for _, f := range fresh {
				d := f.(resourceDoc)
				if _, err := s.res.ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d, options.Replace().SetUpsert(true)); err != nil {
					return err
				}
			}
		} else if err != nil {
			return err
		}
	}
	if _, err := s.res.DeleteMany(ctx, bson.D{{Key: "pend", Value: id}}); err != nil {
		return err
	}
	if _, err := s.ver.UpdateMany(ctx, bson.D{{Key: "pend", Value: id}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "pend", Value: ""}}}}); err != nil {
		return err
	}
	_, err = s.jrn.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	return err
}

// abort drops an open journal's pending changes.
func (s *Store) abort(ctx context.Context, id string) error {
	if _, err := s.res.DeleteMany(ctx, bson.D{{Key: "pend", Value: id}}); err != nil {
		return err
	}
	if _, err := s.res.UpdateMany(ctx, bson.D{{Key: "lockedBy", Value: id}}, bson.D{{Key: "$unset", Value: bson.D{{Key: "lockedBy", Value: ""}}}}); err != nil {
		return err
	}
	if _, err := s.ver.DeleteMany(ctx, bson.D{{Key: "pend", Value: id}}); err != nil {
		return err
	}
	_, err := s.jrn.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	return err
}

// recover finishes the journal writes a crash left: a committing one is
// applied, an open one dropped.
func (s *Store) recover(ctx context.Context) error {
	cur, err := s.jrn.Find(ctx, bson.D{})
	if err != nil {
		return internal("recover", err)
	}
	var open []journalDoc
	if err := cur.All(ctx, &open); err != nil {
		return internal("recover", err)
	}
	for _, j := range open {
		if j.State == "committing" {
			err = s.apply(ctx, j.ID)
		} else {
			err = s.abort(ctx, j.ID)
		}
		if err != nil {
			return internal("recover", err)
		}
		s.log.Warn("MongoDB store: finished a write left by a crash", "journal", j.ID, "state", j.State)
	}
	return nil
}

// Read returns the current version as this write sees it.
func (t *txn) Read(ctx context.Context, typ, id string) (store.Version, error) {
	return t.read(ctx, typ, id)
}

// Search searches as this write sees the store.
func (t *txn) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	return t.search(ctx, q)
}

// Last returns the version of typ written last.
func (t *txn) Last(ctx context.Context, typ string) (store.Version, error) {
	var d versionDoc
	filter := append(bson.D{{Key: "type", Value: typ}}, t.versionsVisible()...)
	err := t.s.ver.FindOne(t.c(ctx), filter, options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Version{}, fhir.Errorf(fhir.NotFound, "", "no %s has been written", typ)
	}
	if err != nil {
		return store.Version{}, internal("last", err)
	}
	return fromVersionDoc(d), nil
}

// Put stores the next version of a resource and its index values: in place
// inside a transaction, as pending documents in a journal write.
func (t *txn) Put(ctx context.Context, v store.Version, index []fhir.IndexValue) error {
	ctx = t.c(ctx)
	key := v.Type + "/" + v.ID
	before, err := t.current(ctx, key)
	if err != nil {
		return err
	}
	curVID := 0
	if before != nil {
		curVID = before.VID
	}
	if v.VersionID != curVID+1 {
		if v.VersionID == 1 {
			return fhir.Errorf(fhir.Conflict, "", "%s exists already: version 1 cannot be stored again", key)
		}
		return fhir.Errorf(fhir.Conflict, "", "version %d of %s cannot follow version %d", v.VersionID, key, curVID)
	}
	seq, err := t.next(ctx, "seq")
	if err != nil {
		return err
	}
	row := int64(0)
	if before != nil {
		row = before.Row
	} else if row, err = t.next(ctx, "row"); err != nil {
		return err
	}
	ts := v.LastUpdated.UnixNano()
	var body []byte
	if !v.Deleted {
		body = v.Body
	}
	vkey := key + "/" + strconv.Itoa(v.VersionID)
	if _, err := t.s.ver.InsertOne(ctx, versionDoc{ID: vkey, Type: v.Type, LID: v.ID, VID: v.VersionID, TS: ts, Deleted: v.Deleted, Method: v.Method, Body: body, Seq: seq, Pend: t.journal}); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fhir.Errorf(fhir.Conflict, "", "version %d of %s exists already", v.VersionID, key)
		}
		return internal("put", err)
	}
	doc := resourceDoc{ID: key, Key: key, Type: v.Type, LID: v.ID, VID: v.VersionID, TS: ts, Deleted: v.Deleted, Method: v.Method, Body: body, Seq: seq, Row: row,
		Keys: []string{}, Index: []indexed{}}
	if !v.Deleted {
		for _, iv := range index {
			doc.Index = append(doc.Index, toIndexed(iv))
		}
		doc.Keys = keysOf(doc.Index)
	}
	doc.Layout, doc.Derived = layout, derive(doc.Index)
	if t.journal == "" {
		if _, err := t.s.res.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true)); err != nil {
			return internal("put", err)
		}
		return nil
	}
	doc.ID, doc.Pend = key+"#"+t.journal, t.journal
	switch {
	case before == nil:
		// New to the store: the pending document is inserted (no scan).
		if _, err := t.s.res.InsertOne(ctx, doc); err != nil {
			return internal("put", err)
		}
	case before.Pend == "":
		// Hide the committed version from this write's own reads; the pending
		// document replaces it at commit.
		if _, err := t.s.res.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{{Key: "$set", Value: bson.D{{Key: "lockedBy", Value: t.journal}}}}); err != nil {
			return internal("put", err)
		}
		doc.Locked = "replace"
		if _, err := t.s.res.InsertOne(ctx, doc); err != nil {
			return internal("put", err)
		}
	default:
		// Written earlier in this write.
		doc.Locked = before.Locked
		if _, err := t.s.res.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc); err != nil {
			return internal("put", err)
		}
	}
	return nil
}

// next returns the next value of a counter: from the database inside a
// transaction (several crs instances share it), from memory under the journal
// (one instance serves the database).
func (t *txn) next(ctx context.Context, name string) (int64, error) {
	if t.reader.journal != "" {
		if name == "seq" {
			t.s.seq++
			return t.s.seq, nil
		}
		t.s.rid++
		return t.s.rid, nil
	}
	var c struct {
		N int64 `bson:"n"`
	}
	start := t.s.seq
	if name == "row" {
		start = t.s.rid
	}
	// The counter starts above what is stored, for databases written before it.
	_, err := t.s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: name}, {Key: "n", Value: bson.D{{Key: "$lt", Value: start}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: start}}}})
	if err != nil {
		return 0, internal("counter", err)
	}
	err = t.s.meta.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: name}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: int64(1)}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&c)
	if err != nil {
		return 0, internal("counter", err)
	}
	return c.N, nil
}

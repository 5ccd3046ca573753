//! containerd.services.content.v1 over any [`ContentStore`], publishing `/content/delete`.
//!
//! The Write stream follows containerd's content server: the first message names the ref (and may
//! announce total and expected digest) and opens — locks — the writer for the life of the stream;
//! each message is STAT, WRITE or COMMIT; a WRITE with offset 0 on a non-empty ingest restarts it,
//! any other offset must equal the current one; an `expected` digest that already exists ends the
//! stream with AlreadyExists.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use berth_api::content::content_server::Content;
use berth_api::events::ContentDelete;
use berth_api::services::v1::{
    AbortRequest, DeleteContentRequest, Info as InfoMsg, InfoRequest, InfoResponse,
    ListContentRequest, ListContentResponse, ListStatusesRequest, ListStatusesResponse,
    ReadContentRequest, ReadContentResponse, Status as StatusMsg, StatusRequest, StatusResponse,
    UpdateRequest, UpdateResponse, WriteAction, WriteContentRequest, WriteContentResponse,
};
use berth_core::content::{ContentStore, ContentWriter, Info, Status, WriterOptions};
use berth_core::{Digest, ErrorKind};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::events::Exchange;
use crate::request::{lease, namespace};
use crate::status::{to_status, GrpcResult, IntoStatus};

/// Largest chunk sent per Read response (containerd uses 1 MiB).
const READ_CHUNK: usize = 1 << 20;
/// Infos per List response message.
const LIST_BATCH: usize = 100;

/// The Content service over a store.
#[derive(Debug)]
pub struct ContentService<S> {
    pub store: Arc<S>,
    pub exchange: Exchange,
}

fn info_msg(i: Info) -> InfoMsg {
    InfoMsg {
        digest: i.digest.to_string(),
        size: i.size,
        created_at: Some(i.created_at.into()),
        updated_at: Some(i.updated_at.into()),
        labels: i.labels.into_iter().collect(),
    }
}

fn status_msg(s: Status) -> StatusMsg {
    StatusMsg {
        started_at: Some(s.started_at.into()),
        updated_at: Some(s.updated_at.into()),
        r#ref: s.reference,
        offset: s.offset,
        total: s.total,
        expected: s.expected.map(|d| d.to_string()).unwrap_or_default(),
    }
}

fn parse_digest(s: &str) -> Result<Digest, tonic::Status> {
    Digest::parse(s).grpc()
}

fn parse_optional_digest(s: &str) -> Result<Option<Digest>, tonic::Status> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_digest(s).map(Some)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl<S: ContentStore + 'static> Content for ContentService<S> {
    async fn info(&self, req: tonic::Request<InfoRequest>) -> GrpcResult<InfoResponse> {
        let ns = namespace(&req)?;
        let d = parse_digest(&req.into_inner().digest)?;
        let info = self.store.info(&ns, &d).await.grpc()?;
        Ok(tonic::Response::new(InfoResponse {
            info: Some(info_msg(info)),
        }))
    }

    async fn update(&self, req: tonic::Request<UpdateRequest>) -> GrpcResult<UpdateResponse> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let msg = req
            .info
            .ok_or_else(|| tonic::Status::invalid_argument("info must not be empty"))?;
        let d = parse_digest(&msg.digest)?;
        let mut info = self.store.info(&ns, &d).await.grpc()?;
        info.labels = msg.labels.into_iter().collect();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self.store.update(&ns, info, &paths).await.grpc()?;
        Ok(tonic::Response::new(UpdateResponse {
            info: Some(info_msg(info)),
        }))
    }

    type ListStream = BoxStream<ListContentResponse>;

    async fn list(&self, req: tonic::Request<ListContentRequest>) -> GrpcResult<Self::ListStream> {
        let ns = namespace(&req)?;
        let infos = self
            .store
            .list(&ns, &req.into_inner().filters)
            .await
            .grpc()?;
        let batches: Vec<Result<ListContentResponse, tonic::Status>> = infos
            .chunks(LIST_BATCH)
            .map(|c| {
                Ok(ListContentResponse {
                    info: c.iter().cloned().map(info_msg).collect(),
                })
            })
            .collect();
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn delete(&self, req: tonic::Request<DeleteContentRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let d = parse_digest(&req.into_inner().digest)?;
        self.store.delete(&ns, &d).await.grpc()?;
        self.exchange.publish(
            &ns,
            "/content/delete",
            &ContentDelete {
                digest: d.to_string(),
            },
        );
        Ok(tonic::Response::new(()))
    }

    type ReadStream = BoxStream<ReadContentResponse>;

    async fn read(&self, req: tonic::Request<ReadContentRequest>) -> GrpcResult<Self::ReadStream> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let d = parse_digest(&req.digest)?;
        let info = self.store.info(&ns, &d).await.grpc()?;
        // As containerd's content server: a negative offset reads from 0, a size of 0 or less
        // (or one past the end, however large) reads to the end.
        let start = req.offset.max(0);
        if start > info.size {
            return Err(tonic::Status::out_of_range(format!(
                "read offset {} of content {d} beyond its size {}",
                req.offset, info.size
            )));
        }
        let end = if req.size > 0 {
            start.saturating_add(req.size).min(info.size)
        } else {
            info.size
        };
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut offset = start;
            while offset < end {
                let want = ((end - offset) as usize).min(READ_CHUNK);
                let msg = match store.read_at(&ns, &d, offset, want).await {
                    Ok(data) if data.is_empty() => break,
                    Ok(data) => {
                        let m = ReadContentResponse { offset, data };
                        offset += m.data.len() as i64;
                        Ok(m)
                    }
                    Err(e) => Err(to_status(e)),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(&self, req: tonic::Request<StatusRequest>) -> GrpcResult<StatusResponse> {
        let ns = namespace(&req)?;
        let s = self
            .store
            .status(&ns, &req.into_inner().r#ref)
            .await
            .grpc()?;
        Ok(tonic::Response::new(StatusResponse {
            status: Some(status_msg(s)),
        }))
    }

    async fn list_statuses(
        &self,
        req: tonic::Request<ListStatusesRequest>,
    ) -> GrpcResult<ListStatusesResponse> {
        let ns = namespace(&req)?;
        let statuses = self
            .store
            .list_statuses(&ns, &req.into_inner().filters)
            .await
            .grpc()?;
        Ok(tonic::Response::new(ListStatusesResponse {
            statuses: statuses.into_iter().map(status_msg).collect(),
        }))
    }

    type WriteStream = BoxStream<WriteContentResponse>;

    async fn write(
        &self,
        req: tonic::Request<Streaming<WriteContentRequest>>,
    ) -> GrpcResult<Self::WriteStream> {
        let ns = namespace(&req)?;
        let lease = lease(&req);
        let mut incoming = req.into_inner();
        let first = match incoming.message().await? {
            Some(m) => m,
            None => {
                return Err(tonic::Status::invalid_argument(
                    "first message must have a reference",
                ))
            }
        };
        if first.r#ref.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "first message must have a reference",
            ));
        }
        // Open (and lock) the writer before answering, so a refused open is the call's status.
        let writer = self
            .store
            .writer(
                &ns,
                WriterOptions {
                    reference: first.r#ref.clone(),
                    size: first.total,
                    digest: parse_optional_digest(&first.expected)?,
                    lease,
                },
            )
            .await
            .grpc()?;
        let (tx, rx) = mpsc::channel(4);
        let session = WriteSession {
            store: self.store.clone(),
            ns,
            total: first.total,
            expected: parse_optional_digest(&first.expected)?,
            writer: Some(writer),
        };
        tokio::spawn(session.run(first, incoming, tx));
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn abort(&self, req: tonic::Request<AbortRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        self.store
            .abort(&ns, &req.into_inner().r#ref)
            .await
            .grpc()?;
        Ok(tonic::Response::new(()))
    }
}

/// One Write stream: owns the writer (and so the ref's lock) until the stream ends.
struct WriteSession<S: ContentStore> {
    store: Arc<S>,
    ns: String,
    total: i64,
    expected: Option<Digest>,
    writer: Option<S::Writer>,
}

impl<S: ContentStore + 'static> WriteSession<S> {
    async fn run(
        mut self,
        first: WriteContentRequest,
        mut incoming: Streaming<WriteContentRequest>,
        tx: mpsc::Sender<Result<WriteContentResponse, tonic::Status>>,
    ) {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            let reply = self.handle(req).await;
            let failed = reply.is_err();
            if tx.send(reply).await.is_err() || failed {
                return;
            }
            next = match incoming.message().await {
                Ok(m) => m,
                Err(status) => {
                    tracing::debug!(%status, "content write stream ended by client");
                    None
                }
            };
        }
    }

    async fn handle(
        &mut self,
        req: WriteContentRequest,
    ) -> Result<WriteContentResponse, tonic::Status> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(tonic::Status::failed_precondition(
                "content write stream already committed",
            ));
        };
        let action = WriteAction::try_from(req.action).map_err(|_| {
            tonic::Status::invalid_argument(format!("unknown write action {}", req.action))
        })?;
        let ws = writer.status().await.grpc()?;
        let mut resp = WriteContentResponse {
            action: req.action,
            offset: ws.offset,
            ..Default::default()
        };
        if let Some(exp) = parse_optional_digest(&req.expected)? {
            match self.store.info(&self.ns, &exp).await {
                Ok(_) => {
                    let reference = ws.reference.clone();
                    self.writer = None; // unlock before aborting
                    if let Err(e) = self.store.abort(&self.ns, &reference).await {
                        tracing::warn!(%reference, error = %e, "abort of ingest for existing content");
                    }
                    return Err(tonic::Status::already_exists(format!(
                        "blob with expected digest {exp} exists"
                    )));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(to_status(e)),
            }
            self.expected = Some(exp);
        }
        if req.total > 0 {
            self.total = req.total;
        }
        match action {
            WriteAction::Stat => {
                resp.digest = writer.digest().to_string();
                resp.started_at = Some(ws.started_at.into());
                resp.updated_at = Some(ws.updated_at.into());
                resp.total = self.total;
            }
            WriteAction::Write | WriteAction::Commit => {
                if req.offset > 0 && req.offset != ws.offset {
                    return Err(tonic::Status::out_of_range(format!(
                        "write @{} must occur at current offset {}",
                        req.offset, ws.offset
                    )));
                }
                if req.offset == 0 && ws.offset > 0 {
                    writer.truncate(0).await.grpc()?;
                    resp.offset = 0;
                }
                if !req.data.is_empty() {
                    writer.write(&req.data).await.grpc()?;
                    resp.offset += req.data.len() as i64;
                }
                resp.digest = writer.digest().to_string();
                if action == WriteAction::Commit {
                    let writer = self.writer.take().expect("writer present");
                    let labels: BTreeMap<String, String> = req.labels.into_iter().collect();
                    let d = writer
                        .commit(self.total, self.expected.clone(), labels)
                        .await
                        .grpc()?;
                    // containerd 1.6 publishes no event on commit (its ctr cannot decode
                    // ContentCreate), so neither does berthd.
                    resp.digest = d.to_string();
                }
            }
        }
        Ok(resp)
    }
}

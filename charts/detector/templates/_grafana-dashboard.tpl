{{/*
The Grafana dashboard "Camera detector" (Grafana's JSON model), carried by grafana-dashboard.yaml. It is one
Go raw string, so Grafana's own {{legend}} formats stay as they are: edit it in Grafana, export it (without
"export for sharing externally": the ${datasource} variable picks the data source) and paste it between the
backquotes. tests/broker/test_metrics_scrape.py checks that every metric it queries is one the broker or a
camera pod really serves.
*/}}
{{- define "detector.grafanaDashboard" -}}
{{`
{
  "uid": "camera-detector",
  "title": "Camera detector",
  "tags": [
    "camera-detector"
  ],
  "description": "The broker's /metrics (the whole fleet) and, with metrics.podMonitor, the camera pods' own.",
  "editable": true,
  "graphTooltip": 1,
  "refresh": "30s",
  "schemaVersion": 39,
  "version": 1,
  "time": {
    "from": "now-6h",
    "to": "now"
  },
  "timezone": "",
  "links": [],
  "annotations": {
    "list": []
  },
  "templating": {
    "list": [
      {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1
      },
      {
        "name": "namespace",
        "label": "Namespace",
        "type": "query",
        "datasource": {
          "type": "prometheus",
          "uid": "${datasource}"
        },
        "query": {
          "query": "label_values(detector_broker_backend_connected, namespace)",
          "refId": "namespace"
        },
        "definition": "label_values(detector_broker_backend_connected, namespace)",
        "refresh": 2,
        "sort": 1,
        "current": {},
        "hide": 0,
        "includeAll": false,
        "multi": false
      },
      {
        "name": "camera_pod",
        "label": "Camera pod",
        "type": "query",
        "datasource": {
          "type": "prometheus",
          "uid": "${datasource}"
        },
        "query": {
          "query": "label_values(detector_camera_online{namespace=\"$namespace\"}, camera_pod)",
          "refId": "camera_pod"
        },
        "definition": "label_values(detector_camera_online{namespace=\"$namespace\"}, camera_pod)",
        "refresh": 2,
        "sort": 1,
        "current": {},
        "hide": 0,
        "includeAll": true,
        "multi": true,
        "allValue": ".*"
      }
    ]
  },
  "panels": [
    {
      "type": "row",
      "title": "Fleet",
      "id": 1,
      "collapsed": false,
      "gridPos": {
        "h": 1,
        "w": 24,
        "x": 0,
        "y": 0
      },
      "panels": []
    },
    {
      "type": "stat",
      "title": "Cameras online",
      "id": 2,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Camera pods whose frames arrive (and whose displays all have a model).",
      "gridPos": {
        "h": 4,
        "w": 4,
        "x": 0,
        "y": 1
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_camera_online{namespace=\"$namespace\"})",
          "legendFormat": "__auto",
          "refId": "A"
        }
      ],
      "options": {
        "reduceOptions": {
          "calcs": [
            "lastNotNull"
          ],
          "fields": "",
          "values": false
        },
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto"
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "mappings": [],
          "thresholds": {
            "mode": "absolute",
            "steps": [
              {
                "color": "green",
                "value": null
              }
            ]
          }
        },
        "overrides": []
      }
    },
    {
      "type": "stat",
      "title": "Cameras offline",
      "id": 3,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 4,
        "w": 4,
        "x": 4,
        "y": 1
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "count(detector_camera_online{namespace=\"$namespace\"} == 0) or vector(0)",
          "legendFormat": "__auto",
          "refId": "A"
        }
      ],
      "options": {
        "reduceOptions": {
          "calcs": [
            "lastNotNull"
          ],
          "fields": "",
          "values": false
        },
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto"
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "mappings": [],
          "thresholds": {
            "mode": "absolute",
            "steps": [
              {
                "color": "green",
                "value": null
              },
              {
                "color": "red",
                "value": 1
              }
            ]
          }
        },
        "overrides": []
      }
    },
    {
      "type": "stat",
      "title": "Backend",
      "id": 4,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 4,
        "w": 4,
        "x": 8,
        "y": 1
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "max(detector_broker_backend_connected{namespace=\"$namespace\"})",
          "legendFormat": "__auto",
          "refId": "A"
        }
      ],
      "options": {
        "reduceOptions": {
          "calcs": [
            "lastNotNull"
          ],
          "fields": "",
          "values": false
        },
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto"
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "mappings": [
            {
              "type": "value",
              "options": {
                "0": {
                  "text": "away",
                  "color": "red"
                },
                "1": {
                  "text": "connected",
                  "color": "green"
                }
              }
            }
          ],
          "thresholds": {
            "mode": "absolute",
            "steps": [
              {
                "color": "green",
                "value": null
              }
            ]
          }
        },
        "overrides": []
      }
    },
    {
      "type": "stat",
      "title": "Backlog to the backend",
      "id": 5,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Messages waiting for the backend (kept while none is connected).",
      "gridPos": {
        "h": 4,
        "w": 4,
        "x": 12,
        "y": 1
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_broker_backlog_messages{namespace=\"$namespace\"})",
          "legendFormat": "__auto",
          "refId": "A"
        }
      ],
      "options": {
        "reduceOptions": {
          "calcs": [
            "lastNotNull"
          ],
          "fields": "",
          "values": false
        },
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto"
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "mappings": [],
          "thresholds": {
            "mode": "absolute",
            "steps": [
              {
                "color": "green",
                "value": null
              },
              {
                "color": "orange",
                "value": 100
              }
            ]
          }
        },
        "overrides": []
      }
    },
    {
      "type": "stat",
      "title": "Refused entries",
      "id": 6,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Entries of the backend's current subscription list the broker refused (GET /refusals says why).",
      "gridPos": {
        "h": 4,
        "w": 4,
        "x": 16,
        "y": 1
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_broker_refused_entries{namespace=\"$namespace\"})",
          "legendFormat": "__auto",
          "refId": "A"
        }
      ],
      "options": {
        "reduceOptions": {
          "calcs": [
            "lastNotNull"
          ],
          "fields": "",
          "values": false
        },
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto"
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "mappings": [],
          "thresholds": {
            "mode": "absolute",
            "steps": [
              {
                "color": "green",
                "value": null
              },
              {
                "color": "orange",
                "value": 1
              }
            ]
          }
        },
        "overrides": []
      }
    },
    {
      "type": "stat",
      "title": "Displays without a model",
      "id": 7,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 4,
        "w": 4,
        "x": 20,
        "y": 1
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_subscription_model_error{namespace=\"$namespace\"}) or vector(0)",
          "legendFormat": "__auto",
          "refId": "A"
        }
      ],
      "options": {
        "reduceOptions": {
          "calcs": [
            "lastNotNull"
          ],
          "fields": "",
          "values": false
        },
        "colorMode": "background",
        "graphMode": "none",
        "textMode": "auto"
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "mappings": [],
          "thresholds": {
            "mode": "absolute",
            "steps": [
              {
                "color": "green",
                "value": null
              },
              {
                "color": "red",
                "value": 1
              }
            ]
          }
        },
        "overrides": []
      }
    },
    {
      "type": "row",
      "title": "Cameras",
      "id": 8,
      "collapsed": false,
      "gridPos": {
        "h": 1,
        "w": 24,
        "x": 0,
        "y": 5
      },
      "panels": []
    },
    {
      "type": "timeseries",
      "title": "Frames per second",
      "id": 9,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 6
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_camera_fps{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "{{camera_pod}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Age of the latest frame",
      "id": 10,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 6
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_camera_frame_age_seconds{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "{{camera_pod}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Online",
      "id": 11,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "1 while frames arrive; 0 for a pod that does not report to the broker.",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 14
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_camera_online{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "{{camera_pod}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Restarts and stream reconnects (per 15 min)",
      "id": 12,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 14
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "increase(detector_camera_restarts_total{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}[15m])",
          "legendFormat": "restarts {{camera_pod}}",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "increase(detector_camera_reconnects_total{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}[15m])",
          "legendFormat": "reconnects {{camera_pod}}",
          "refId": "B"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "CPU",
      "id": 13,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Cores the camera pod's process uses.",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 22
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_camera_cpu_cores{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "{{camera_pod}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Memory",
      "id": 14,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 22
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_camera_memory_bytes{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "{{camera_pod}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "bytes",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "table",
      "title": "Displays",
      "id": 15,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Each display (subscription) and its camera pod; model error 1: its model does not load.",
      "gridPos": {
        "h": 8,
        "w": 24,
        "x": 0,
        "y": 30
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_subscription_info{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "__auto",
          "refId": "A",
          "instant": true,
          "range": false,
          "format": "table"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "detector_subscription_model_error{namespace=\"$namespace\", camera_pod=~\"$camera_pod\"}",
          "legendFormat": "__auto",
          "refId": "B",
          "instant": true,
          "range": false,
          "format": "table"
        }
      ],
      "transformations": [
        {
          "id": "merge",
          "options": {}
        },
        {
          "id": "organize",
          "options": {
            "excludeByName": {
              "Time": true,
              "Value #A": true,
              "__name__": true,
              "job": true,
              "instance": true,
              "endpoint": true,
              "service": true,
              "container": true,
              "pod": true,
              "namespace": true
            },
            "renameByName": {
              "Value #B": "model error"
            }
          }
        }
      ],
      "fieldConfig": {
        "defaults": {},
        "overrides": []
      },
      "options": {
        "showHeader": true
      }
    },
    {
      "type": "row",
      "title": "Broker",
      "id": 16,
      "collapsed": false,
      "gridPos": {
        "h": 1,
        "w": 24,
        "x": 0,
        "y": 38
      },
      "panels": []
    },
    {
      "type": "timeseries",
      "title": "Detection events (per second)",
      "id": 17,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "routed: queued for the backend; duplicate: a resend; settled: no message needed; dropped: past the max age (expired) or left to the pod when the backlog was full (evicted).",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 39
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (outcome) (rate(detector_broker_events_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "{{outcome}}",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(rate(detector_broker_events_delivered_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "delivered",
          "refId": "B"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (reason) (rate(detector_broker_events_dropped_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "dropped: {{reason}}",
          "refId": "C"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Backlog and backend",
      "id": 18,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 39
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_broker_backlog_messages{namespace=\"$namespace\"})",
          "legendFormat": "backlog",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "max(detector_broker_backend_connected{namespace=\"$namespace\"})",
          "legendFormat": "backend connected",
          "refId": "B"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(increase(detector_broker_backend_connections_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "connections",
          "refId": "C"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Backend messages (per second)",
      "id": 19,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 47
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (type) (rate(detector_broker_messages_received_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "in: {{type}}",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (type) (rate(detector_broker_messages_sent_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "out: {{type}}",
          "refId": "B"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Refused",
      "id": 20,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Backend messages ignored, and subscription entries refused, by reason.",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 47
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (reason) (increase(detector_broker_messages_refused_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "message: {{reason}}",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (reason) (increase(detector_broker_subscriptions_refused_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "entry: {{reason}}",
          "refId": "B"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Reconcile time",
      "id": 21,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 55
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "histogram_quantile(0.5, sum by (le) (rate(detector_broker_reconcile_seconds_bucket{namespace=\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p50",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "histogram_quantile(0.95, sum by (le) (rate(detector_broker_reconcile_seconds_bucket{namespace=\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p95",
          "refId": "B"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Subscriptions and camera pods",
      "id": 22,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 55
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_broker_subscriptions{namespace=\"$namespace\"})",
          "legendFormat": "subscriptions",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_broker_pods{namespace=\"$namespace\"})",
          "legendFormat": "camera pods",
          "refId": "B"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "row",
      "title": "Camera pods (their own /metrics: metrics.podMonitor)",
      "id": 23,
      "collapsed": false,
      "gridPos": {
        "h": 1,
        "w": 24,
        "x": 0,
        "y": 63
      },
      "panels": []
    },
    {
      "type": "timeseries",
      "title": "Pipeline time per display (p95)",
      "id": 24,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 64
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "histogram_quantile(0.95, sum by (le, subscription) (rate(detector_pipeline_seconds_bucket{namespace=\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "{{subscription}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Events made (per second)",
      "id": 25,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 64
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (subscription, kind) (rate(detector_events_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "{{subscription}} {{kind}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Waiting writes and events",
      "id": 26,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "Redis/PostgreSQL writes waiting on the pods' disks, and events waiting for the broker's ack.",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 72
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (service) (detector_action_outbox_items{namespace=\"$namespace\"})",
          "legendFormat": "writes: {{service}}",
          "refId": "A"
        },
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum(detector_outbox_events{namespace=\"$namespace\"})",
          "legendFormat": "events for the broker",
          "refId": "B"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    },
    {
      "type": "timeseries",
      "title": "Failed actions (per second)",
      "id": 27,
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "description": "",
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 72
      },
      "targets": [
        {
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "expr": "sum by (action) (rate(detector_action_failures_total{namespace=\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "{{action}}",
          "refId": "A"
        }
      ],
      "options": {
        "legend": {
          "displayMode": "table",
          "placement": "right",
          "calcs": [
            "lastNotNull"
          ]
        },
        "tooltip": {
          "mode": "multi",
          "sort": "desc"
        }
      },
      "fieldConfig": {
        "defaults": {
          "unit": "none",
          "custom": {
            "lineWidth": 1,
            "fillOpacity": 10,
            "stacking": {
              "mode": "none"
            }
          }
        },
        "overrides": []
      }
    }
  ]
}
`}}
{{- end }}

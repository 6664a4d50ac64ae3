from django.urls import path

from emotion import views

urlpatterns = [
    path("review/", views.review, name="review"),
    path("review/<id:reading_id>/", views.review_label, name="review-label"),
]
